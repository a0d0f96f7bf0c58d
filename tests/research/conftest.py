import numpy as np
import pytest


def make_folder(root, classes, n_patients=12, per=3, size=32, seed=0):
    """<root>/<class>/*.png grey slices + patients.csv; class c is brighter by 50*c with a bright square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    lines = ["image,patient"]
    for p in range(n_patients):
        c = p % len(classes)
        (root / classes[c]).mkdir(parents=True, exist_ok=True)
        for s in range(per):
            img = rng.normal(70 + 50 * c, 30, size=(size, size))
            img[8:20, 8:20] += 40 * c
            name = f"{classes[c]}/p{p:02d}_{s}.png"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name)
            lines.append(f"{name},p{p:02d}")
    (root / "patients.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_folder(tmp_path):
    """grade-style folder: G2/ and G3/, 12 patients x 3 slices."""
    return make_folder(tmp_path / "tiny", ["G2", "G3"])


@pytest.fixture
def tiny_type_folder(tmp_path):
    """tumor_type-style folder: glioma/ meningioma/ pituitary/, 18 patients x 3 slices."""
    return make_folder(tmp_path / "tinytype", ["glioma", "meningioma", "pituitary"], n_patients=18)
