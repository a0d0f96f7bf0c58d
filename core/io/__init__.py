"""Reading brain MRI from any format a clinician has: NIfTI, DICOM, or one slice image."""

from core.io.volume import Volume, VolumeLoadError

__all__ = ["Volume", "VolumeLoadError", "load_study", "load_volume", "rename_channels"]


def load_volume(source, filename=None, **options):  # replaced by core.io.loader
    from core.io.loader import load_volume as _load  # heavy: pydicom; core.io stays light for the CLI

    return _load(source, filename=filename, **options)


def load_study(source, filename=None, **options):  # lazy like load_volume: core.io stays light to import
    from core.io.loader import load_study as _load  # heavy: pydicom; core.io stays light for the CLI

    return _load(source, filename=filename, **options)


def rename_channels(volume, mapping):
    from core.io.study import rename_channels as _rename  # heavy: pydicom; core.io stays light for the CLI

    return _rename(volume, mapping)
