"""2D images: real Figshare / TCGA-LGG fixtures and Pillow-written variants."""

import io

import numpy as np
import pytest
from PIL import Image

from core.io import VolumeLoadError, load_volume

FIGSHARE = ["figshare_meningioma_1.jpg", "figshare_glioma_209.jpg", "figshare_pituitary_709.jpg"]


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def displayed(v):
    """What an axial viewer shows: flip both axes back (the Volume contract)."""
    return v.array[0][::-1, ::-1]


@pytest.mark.parametrize("name", FIGSHARE)
def test_figshare_jpeg(fixtures_dir, name):
    path = fixtures_dir / name
    v = load_volume(path)
    assert v.shape == (1, 512, 512) and v.source_format == "image" and v.modality == "unknown"
    assert list(v.channels) == ["grey"] and v.spacing == (1.0, 1.0, 1.0)
    assert any("nominal" in w for w in v.warnings)
    np.testing.assert_array_equal(displayed(v), np.asarray(Image.open(path).convert("L"), np.float32))


def test_tcga_slice_with_sequences(fixtures_dir):
    path = fixtures_dir / "tcga_lgg_CS_4941_013.jpg"
    rgb = np.asarray(Image.open(path), np.float32)
    v = load_volume(path, sequences=["t1pre", "flair", "t1post"])
    assert list(v.channels) == ["t1pre", "flair", "t1post"] and v.active_channel == "t1pre"
    np.testing.assert_array_equal(v.channels["flair"][0][::-1, ::-1], rgb[..., 1])
    plain = load_volume(path)
    assert list(plain.channels) == ["grey", "red", "green", "blue"] and plain.active_channel == "grey"
    expected = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(displayed(plain), expected, atol=1e-3)
    with pytest.raises(VolumeLoadError, match="3 colour channels but 2"):
        load_volume(path, sequences=["a", "b"])


def test_tcga_mask_png(fixtures_dir):
    v = load_volume(fixtures_dir / "tcga_lgg_CS_4941_013_mask.png")
    assert list(v.channels) == ["grey"] and set(np.unique(v.array)) == {0.0, 255.0}


def test_orientation_convention():
    img = np.zeros((4, 6), np.uint8)
    img[0, 0] = 200  # top-left as displayed
    v = load_volume(_png(Image.fromarray(img)))
    assert v.array[0, -1, -1] == 200 and displayed(v)[0, 0] == 200


def test_16bit_grey_png():
    arr = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100
    v = load_volume(_png(Image.fromarray(arr)))
    np.testing.assert_array_equal(displayed(v), arr.astype(np.float32))
    assert v.meta["bits"] == 16


def test_rgb_with_equal_channels_is_grey():
    grey = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    v = load_volume(_png(Image.fromarray(np.stack([grey] * 3, -1))))
    assert list(v.channels) == ["grey"]
    np.testing.assert_array_equal(displayed(v), grey.astype(np.float32))


def test_rgba_and_palette():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 255, (8, 9, 4), dtype=np.uint8)
    v = load_volume(_png(Image.fromarray(rgba, "RGBA")))
    assert list(v.channels) == ["grey", "red", "green", "blue"]
    np.testing.assert_array_equal(v.channels["blue"][0][::-1, ::-1], rgba[..., 2].astype(np.float32))
    pal = Image.fromarray(rng.integers(0, 4, (8, 9), dtype=np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    v = load_volume(_png(pal))
    assert "red" in v.channels and v.shape == (1, 8, 9)
    grey_pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    grey_pal.putpalette([0, 0, 0, 128, 128, 128] + [0] * 762)
    assert list(load_volume(_png(grey_pal)).channels) == ["grey"]


def test_tiff_8_and_16_bit():
    arr16 = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    v = load_volume(_png(Image.fromarray(arr16), "TIFF"), filename="x.tif")
    np.testing.assert_array_equal(displayed(v), arr16.astype(np.float32))
    arr8 = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    v = load_volume(_png(Image.fromarray(arr8), "TIFF"))
    np.testing.assert_array_equal(displayed(v), arr8.astype(np.float32))


def test_multipage_tiff_first_page_with_warning():
    pages = [Image.fromarray(np.full((5, 5), i * 10, np.uint8)) for i in range(3)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    v = load_volume(buf.getvalue())
    assert (v.array == 0).all() and any("3 pages" in w for w in v.warnings)


def test_truncated_jpeg(fixtures_dir):
    data = (fixtures_dir / "figshare_glioma_209.jpg").read_bytes()
    with pytest.raises(VolumeLoadError, match="incomplete|damaged"):
        load_volume(data[: len(data) // 2], filename="cut.jpg")


def test_image_pixel_limit(fixtures_dir, monkeypatch):
    monkeypatch.setenv("NEUROGRADE_MAX_VOXELS", "1000")
    with pytest.raises(VolumeLoadError, match="not read"):
        load_volume(fixtures_dir / "figshare_glioma_209.jpg")


def test_uploaded_file_object(fixtures_dir):
    class Uploaded(io.BytesIO):
        name = "scan.jpg"

    v = load_volume(Uploaded((fixtures_dir / "figshare_meningioma_1.jpg").read_bytes()))
    assert v.shape == (1, 512, 512)


def flair_only(fixtures_dir, path, fmt: str):
    """The TCGA slice as TCGA-LGG stored patients with FLAIR only: FLAIR in all three channels."""
    flair = np.asarray(Image.open(fixtures_dir / "tcga_lgg_CS_4941_013.jpg"))[..., 1]
    Image.fromarray(np.stack([flair] * 3, -1)).save(path, format=fmt, quality=95)
    return flair


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_one_sequence_copied_into_all_channels_loads_with_a_warning(fixtures_dir, tmp_path, fmt):
    path = tmp_path / f"flair_only.{fmt.lower()}"
    flair = flair_only(fixtures_dir, path, fmt)
    v = load_volume(path, sequences=["t1pre", "flair", "t1post"])
    assert list(v.channels) == ["t1pre", "flair", "t1post"]
    assert v.meta["identical_channels"] == ["t1pre", "flair", "t1post"]
    assert (
        sum(
            "the three sequences look identical (one sequence copied into all channels?)" in w.lower()
            for w in v.warnings
        )
        == 1
    )
    np.testing.assert_allclose(v.channels["flair"][0][::-1, ::-1], flair, atol=3)
    real = load_volume(fixtures_dir / "tcga_lgg_CS_4941_013.jpg", sequences=["t1pre", "flair", "t1post"])
    assert "identical_channels" not in real.meta and not any("identical" in w for w in real.warnings)
    assert list(load_volume(path).channels) == ["grey"]  # unnamed: one grey picture
