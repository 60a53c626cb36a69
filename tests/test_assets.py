"""The scenes' inputs: the photo manifest (sources, licences, splits) and the checksums that make
every machine build the same scenes or fail with a one-line error."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from proxy import assets as A
from proxy import scenes as S


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Tests below swap files and manifests: no verified result may leak into or out of them."""
    caches = (A.photos, A.load_background, A.assets_digest)
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


def test_manifest_records_source_licence_digests_and_a_fixed_split() -> None:
    photos = A.photos()
    assert len(photos) == 59
    assert {s: len(A.photo_names(s)) for s in A.SPLITS} == {"train": 25, "val": 9, "test": 25}
    assert [p.index for p in photos] == list(range(59))
    for p in photos:
        assert p.source and p.licence and p.credit, p.name
        assert len(p.sha256) == 64 and len(p.pixels_sha256) == 64
        if p.file is not None:  # committed copies: next to the manifest, small
            assert (A.PHOTO_DIR / p.file).stat().st_size < 250_000
        else:  # read from a package that pyproject.toml installs
            assert p.package in ("skimage", "sklearn", "matplotlib")
    committed = sum((A.PHOTO_DIR / p.file).stat().st_size for p in photos if p.file)
    assert committed < 4_000_000  # 40 copies, 3.2 MB
    assert sum(p.file is not None for p in photos) == 40


def test_every_photo_verifies_on_this_machine() -> None:
    for p in A.photos():
        arr = A.load_background(p.name)
        assert arr.dtype == np.uint8 and arr.ndim in (2, 3) and min(arr.shape[:2]) >= 300
        assert A.pixels_sha256(arr) == p.pixels_sha256
        assert not arr.flags.writeable


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_committed_copy_with_other_bytes_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = A.photo("aqua")
    copy = tmp_path / p.file
    shutil.copytree(A.PHOTO_DIR, tmp_path, dirs_exist_ok=True)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    monkeypatch.setattr(A, "PHOTO_DIR", tmp_path)
    with pytest.raises(A.AssetMismatchError) as exc:
        A.load_background("aqua")
    text = _one_line(exc)
    assert "'aqua'" in text and p.sha256 in text and hashlib.sha256(bytes(raw)).hexdigest() in text
    with pytest.raises(A.AssetMismatchError, match="'aqua'"):
        S.scene_key(S.SCENE_PRESETS["test"])  # no key (so no cache) for unverified inputs
    A.photo_path("astronaut")  # the others still verify


def test_a_package_shipping_other_bytes_fails_or_uses_the_copy_in_DPC_NAS_PHOTOS(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = A.photo("astronaut")
    real = A.photo_path("astronaut")
    fake_pkg = tmp_path / "skimage"
    (fake_pkg / "data").mkdir(parents=True)
    other = np.zeros((8, 8), np.uint8)
    from PIL import Image

    Image.fromarray(other).save(fake_pkg / p.path)
    monkeypatch.setattr(A, "_package_dir", lambda name: fake_pkg if name == "skimage" else A._package_dir(name))
    monkeypatch.delenv(A.PHOTOS_ENV, raising=False)
    with pytest.raises(A.AssetMismatchError) as exc:
        A.photo_path("astronaut")
    text = _one_line(exc)
    assert "'astronaut'" in text and p.sha256 in text and A.file_sha256(fake_pkg / p.path) in text
    assert f"${A.PHOTOS_ENV}/astronaut.png" in text
    # the remedy the message names: a copy with the expected bytes
    carried = tmp_path / "carried"
    carried.mkdir()
    shutil.copy(real, carried / "astronaut.png")
    monkeypatch.setenv(A.PHOTOS_ENV, str(carried))
    assert A.photo_path("astronaut") == carried / "astronaut.png"
    assert A.pixels_sha256(A.load_background("astronaut")) == p.pixels_sha256


def test_a_missing_package_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "_package_dir", lambda name: tmp_path)
    monkeypatch.delenv(A.PHOTOS_ENV, raising=False)
    with pytest.raises(A.AssetMismatchError) as exc:
        A.photo_path("grace_hopper")
    text = _one_line(exc)
    assert "'grace_hopper'" in text and "not found" in text and str(tmp_path) in text


def test_other_decoded_pixels_are_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = A.decode_photo

    def off_by_one(path: Path) -> np.ndarray:
        arr = decode(path).copy()
        arr.flat[0] ^= 1  # what another JPEG decoder does to a few pixels
        return arr

    monkeypatch.setattr(A, "decode_photo", off_by_one)
    with pytest.raises(A.AssetMismatchError) as exc:
        A.load_background("rocket")
    text = _one_line(exc)
    assert "'rocket'" in text and "decodes to pixels" in text and A.photo("rocket").pixels_sha256 in text


def test_other_mnist_bytes_are_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "MNIST_SHA256", "0" * 64)
    with pytest.raises(A.AssetMismatchError) as exc:
        A.mnist_path()
    assert "0" * 64 in _one_line(exc)


def test_scene_key_changes_with_a_photo_digest_or_its_split(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = S.SCENE_PRESETS["test"]
    base = S.scene_key(cfg)
    table = A.photos()
    for change in ({"pixels_sha256": "1" * 64}, {"split": "val" if table[0].split != "val" else "test"}):
        A.assets_digest.cache_clear()
        patched = (dataclasses.replace(table[0], **change),) + table[1:]
        monkeypatch.setattr(A, "photos", lambda patched=patched: patched)
        assert S.scene_key(cfg) != base, change
    monkeypatch.undo()
    A.assets_digest.cache_clear()
    assert S.scene_key(cfg) == base


# The bytes of the `test` preset's three splits as built on this project's machines, for the
# libraries that enter the scene key. Another machine with the same libraries must build the same
# bytes (a different CPU must not change them); with other libraries the test says which differ.
REFERENCE = {
    "libraries": {"numpy": "2.4", "pillow": "13.0.0", "scikit-image": "0.26.0"},
    "scene_key": "152f732a3b7b",
    "sha256": "fde9a2ee39a0b31717f70cddd61c0ce444c90a15f41a5848f59dda55bd8c4391",
}


def test_the_test_preset_has_the_reference_bytes_for_the_same_libraries(tmp_path: Path) -> None:
    import PIL
    import skimage

    libraries = {"numpy": ".".join(np.__version__.split(".")[:2]), "pillow": PIL.__version__,
                 "scikit-image": skimage.__version__}
    if libraries != REFERENCE["libraries"]:
        pytest.skip(f"reference bytes are for {REFERENCE['libraries']}, this machine has {libraries}")
    h = hashlib.sha256()
    for ds in S.build_scenes("test", tmp_path):
        for arr in (ds.images, ds.masks, ds.digits, ds.backgrounds):
            h.update(np.ascontiguousarray(arr).tobytes())
    cfg = S.SCENE_PRESETS["test"]
    assert (S.scene_key(cfg), h.hexdigest()) == (REFERENCE["scene_key"], REFERENCE["sha256"]), (
        "the test preset's scenes differ from the reference: update REFERENCE if the generator, the "
        "preset or the photo manifest changed on purpose, else this machine builds other scenes")
