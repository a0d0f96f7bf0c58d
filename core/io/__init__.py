"""Reading brain MRI from any format a clinician has: NIfTI, DICOM, or one slice image."""
from core.io.volume import Volume, VolumeLoadError

__all__ = ["Volume", "VolumeLoadError", "load_volume"]


def load_volume(source, filename=None, **options):  # replaced by core.io.loader
    from core.io.loader import load_volume as _load

    return _load(source, filename=filename, **options)
