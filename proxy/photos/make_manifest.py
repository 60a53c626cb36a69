"""Write ``manifest.json`` (and the committed copies) of the scene background photos.

Run once by a maintainer, never at build time::

    mkdir /tmp/debs && cd /tmp/debs
    apt-get download mate-backgrounds plasma-workspace-wallpapers python3-pywt \
        lomiri-wallpapers-16.04 lomiri-wallpapers-20.04   # Debian 12
    for d in *.deb; do dpkg-deb -x "$d" root; done
    python proxy/photos/make_manifest.py --debian-root /tmp/debs/root

An entry whose committed copy is already listed in ``manifest.json`` is kept as it is (its
original need not be in ``--debian-root``), so adding photos never rewrites the existing ones
and the scenes of the splits that gain no photo stay byte-identical.

Photos shipped by pip packages that ``pyproject.toml`` installs (scikit-image, matplotlib, and
scikit-learn through mlxtend) are read from the installed package at build time and only their
digests are recorded. Photos from Debian packages (absent from a fresh machine) are committed
next to this file: scaled (Lanczos) so the shorter side is 512 px and saved as JPEG (quality 90),
which is what the scenes use (a crop of 35-100% of the shorter side, resized to 513 px).

Each entry: ``name``, ``split`` (fixed here, by hand, so that every split mixes grey textures,
colour photos, microscopy/astronomy and outdoor photos; scikit-image's ``page`` and ``text``
are left out: printed characters in a background would be unlabelled digit-like shapes), ``file`` (committed copy) or
``package`` + ``path`` (installed package), ``sha256`` of the file's bytes, ``pixels_sha256``
of the decoded array (shape, then uint8 bytes; grey photos stay HxW, others become RGB),
``source``, ``licence``, ``credit``, and for copies ``original_sha256`` and ``processing``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from proxy.assets import decode_photo, pixels_sha256  # one decoding and digest for builds and the manifest

HERE = Path(__file__).resolve().parent
SHORT_SIDE = 512
QUALITY = 90

SK = "scikit-image (skimage/data, BSD-3-Clause package)"
MATE = "Debian 12 package mate-backgrounds 1.26.0-1"
PLASMA = "Debian 12 package plasma-workspace-wallpapers 4:5.27.5-2"
PLASMA_LICENCE = "LGPL-3.0 (upstream metadata.json); Debian's copyright file lists the package as GPL-2+"
# Ubuntu wallpaper-contest photos; licences per file from the package's debian/copyright.
LOMIRI16 = "Debian 12 package lomiri-wallpapers-16.04 20.04.0-2 (Ubuntu 18.04 wallpaper contest)"
LOMIRI20 = "Debian 12 package lomiri-wallpapers-20.04 20.04.0-2 (Ubuntu 20.04 wallpaper contest)"


def _lomiri(name: str, file: str, licence: str, credit: str, package: str = LOMIRI16):
    return (name, "test", ("deb", f"usr/share/backgrounds/{file}"), package, licence, credit)


# name, split, where, source, licence, credit
PHOTOS: list[tuple[str, str, tuple[str, str], str, str, str]] = [
    # --- installed pip packages (read in place, verified by digest)
    ("astronaut", "train", ("skimage", "data/astronaut.png"), SK, "public domain (NASA)", "NASA, Eileen Collins portrait"),
    ("brick", "train", ("skimage", "data/brick.png"), SK, "CC0-1.0", "CC0Textures Bricks25, processed by scikit-image"),
    ("camera", "train", ("skimage", "data/camera.png"), SK, "CC0-1.0", "Lav Varshney"),
    ("cell", "train", ("skimage", "data/cell.png"), SK, "CC0-1.0", "Paul Mueller et al., quantitative phase image"),
    ("chelsea", "train", ("skimage", "data/chelsea.png"), SK, "CC0-1.0", "Stefan van der Walt"),
    ("coffee", "train", ("skimage", "data/coffee.png"), SK, "CC0-1.0", "Rachel Michetti"),
    ("coins", "test", ("skimage", "data/coins.png"), SK, "no known copyright restrictions", "Brooklyn Museum collection"),
    ("grass", "train", ("skimage", "data/grass.png"), SK, "CC0-1.0", "linolafett (DeviantArt), processed by scikit-image"),
    ("motorcycle", "train", ("skimage", "data/motorcycle_left.png"), SK, "not stated (Middlebury 2014 stereo benchmark)",
     "N. Nesic, P. Westling, X. Wang, Y. Kitajima, G. Krathwohl, D. Scharstein"),
    ("retina", "train", ("skimage", "data/retina.jpg"), SK, "CC0-1.0", "Mikael Haggstrom (Wikimedia Commons)"),
    ("gravel", "val", ("skimage", "data/gravel.png"), SK, "CC0-1.0", "CC0Textures Gravel04, processed by scikit-image"),
    ("clock", "val", ("skimage", "data/clock_motion.png"), SK, "public domain", "Stefan van der Walt"),
    ("immunohistochemistry", "val", ("skimage", "data/ihc.png"), SK, "no known copyright restrictions",
     "Center for Microscopy and Molecular Imaging (CMMI)"),
    ("rocket", "val", ("skimage", "data/rocket.jpg"), SK, "public domain (SpaceX)", "SpaceX, DSCOVR launch"),
    ("moon", "test", ("skimage", "data/moon.png"), SK, "not stated (USC-SIPI image database)", "USC-SIPI"),
    ("hubble_deep_field", "test", ("skimage", "data/hubble_deep_field.jpg"), SK, "public domain (NASA)", "NASA/HubbleSite 2012-37"),
    ("china", "train", ("sklearn", "datasets/images/china.jpg"), "scikit-learn (a dependency of mlxtend)", "CC-BY-2.0",
     "danielbuechele (Flickr 6061409035), retrieved by Robert Layton"),
    ("flower", "test", ("sklearn", "datasets/images/flower.jpg"), "scikit-learn (a dependency of mlxtend)", "CC-BY-2.0",
     "vultilion (Flickr 6056698931), retrieved by Robert Layton"),
    ("grace_hopper", "train", ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"), "matplotlib sample_data",
     "public domain (US Navy)", "US Navy portrait of Grace Hopper"),
    # --- Debian packages (committed copies)
    ("ascent", "train", ("deb", "usr/lib/python3/dist-packages/pywt/data/ascent.npz"),
     "Debian 12 package python3-pywt 1.1.1-3+b2 (PyWavelets; the image SciPy shipped as misc.ascent)",
     "public domain", "accent-to-the-top.jpg, public-domain-image.com"),
    ("blinds", "train", ("deb", "usr/share/backgrounds/mate/nature/Blinds.jpg"), MATE, "GPL-2+",
     "2008 Lennart Poettering, Andrea Cimitan"),
    ("dune", "train", ("deb", "usr/share/backgrounds/mate/nature/Dune.jpg"), MATE, "GPL-2+", "2007 Marco Cogoni, 2008 Hylke Bons"),
    ("garden", "train", ("deb", "usr/share/backgrounds/mate/nature/Garden.jpg"), MATE, "GPL-2+", "2008 Charles Barbin"),
    ("green_meadow", "train", ("deb", "usr/share/backgrounds/mate/nature/GreenMeadow.jpg"), MATE, "GPL-2+",
     "2005 Timothy Schellhase, 2008 Lapo Calamandrei"),
    ("rain_drops", "train", ("deb", "usr/share/backgrounds/mate/nature/RainDrops.jpg"), MATE, "GPL-2+", "2008 blackcombwhistler07"),
    ("wood", "train", ("deb", "usr/share/backgrounds/mate/nature/Wood.jpg"), MATE, "GPL-2+", "2008 Jean-Francois Fortin Tam"),
    ("aqua", "val", ("deb", "usr/share/backgrounds/mate/nature/Aqua.jpg"), MATE, "GPL-2+", "2008 Charles Barbin"),
    ("lady_bird", "val", ("deb", "usr/share/backgrounds/mate/nature/LadyBird.jpg"), MATE, "GPL-2+", "2008 Charles Barbin"),
    ("yellow_flower", "val", ("deb", "usr/share/backgrounds/mate/nature/YellowFlower.jpg"), MATE, "GPL-2+", "2008 Charles Barbin"),
    ("fresh_flower", "test", ("deb", "usr/share/backgrounds/mate/nature/FreshFlower.jpg"), MATE, "GPL-2+", "2005 Jens Ansorg"),
    ("storm", "test", ("deb", "usr/share/backgrounds/mate/nature/Storm.jpg"), MATE, "GPL-2+", "2008 Sergey Nazarov"),
    ("two_wings", "test", ("deb", "usr/share/backgrounds/mate/nature/TwoWings.jpg"), MATE, "GPL-2+",
     "2008 Charles Barbin, Hylke Bons"),
    ("by_the_water", "train", ("deb", "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Maciej Wiklo"),
    ("cold_ripple", "train", ("deb", "usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Risto Saukonpaa"),
    ("evening_glow", "train", ("deb", "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Ian Hex"),
    ("grey", "train", ("deb", "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE, "Sigi Sagi"),
    ("one_stands_out", "train", ("deb", "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg"), PLASMA,
     PLASMA_LICENCE, "Risto Saukonpaa"),
    ("path", "train", ("deb", "usr/share/wallpapers/Path/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Risto Saukonpaa"),
    ("summer_1am", "train", ("deb", "usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Risto Saukonpaa"),
    ("colorful_cups", "val", ("deb", "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg"), PLASMA,
     PLASMA_LICENCE, "Dmitri Popov"),
    ("kite", "val", ("deb", "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg"), PLASMA, PLASMA_LICENCE,
     "Risto Saukonpaa"),
    ("darkest_hour", "test", ("deb", "usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg"), PLASMA,
     PLASMA_LICENCE, "Risto Saukonpaa"),
    ("fallen_leaf", "test", ("deb", "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg"), PLASMA,
     PLASMA_LICENCE, "Martin Klapetek"),
    # --- added later, all to test: with 9 photos per split the photo, not the scene, carried
    # most of test's seed noise (the README's noise table); the two digital-art files of these
    # packages and the abstract ones are left out.
    _lomiri("aitzgorri", "aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi, 2018"),
    _lomiri("analog_pattern", "analogpattern_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich, 2018"),
    _lomiri("bridge", "Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk, 2018"),
    _lomiri("dragonfly", "Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", '"Bolly", 2018'),
    _lomiri("free", "free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich, 2018"),
    _lomiri("friends", "friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi, 2018"),
    _lomiri("greentock", "greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich, 2018"),
    _lomiri("life", "life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi, 2018"),
    _lomiri("picos_de_europa", "picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi, 2018"),
    _lomiri("fig", "Picture_0B_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace", 2018'),
    _lomiri("brushes", "Picture_1A_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace", 2018'),
    _lomiri("seeding", "seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt, 2018"),
    _lomiri("sunset", "sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi, 2018"),
    _lomiri("wine", "Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakub Mede, 2018"),
    _lomiri("infinite_sea", "Infinite-Sea_by_Aury88.jpg", "CC-BY-SA-3.0", "Aury88, 2019", LOMIRI20),
    _lomiri("kleiber", "Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0", "Lukas Baubkus, 2021", LOMIRI20),
]


def decode(path: Path) -> np.ndarray:
    return decode_photo(path)  # the decoding every build uses (one definition)


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(list(spec.submodule_search_locations)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debian-root", type=Path, required=True, help="folder the .deb files were extracted into")
    args = parser.parse_args()
    manifest = HERE / "manifest.json"
    kept = {e["name"]: e for e in json.loads(manifest.read_text())["photos"]} if manifest.exists() else {}
    entries = []
    for name, split, (where, rel), source, licence, credit in PHOTOS:
        entry = {"name": name, "split": split}
        old = kept.get(name)
        if old is not None and "file" in old and (HERE / old["file"]).exists() and old["split"] == split:
            entries.append({**old, "source": source, "licence": licence, "credit": credit})
            continue
        if where == "deb":
            original = args.debian_root / rel
            raw = original.read_bytes()
            if original.suffix == ".npz":
                with np.load(original) as z:
                    im = Image.fromarray(z["data"])
            else:
                im = Image.open(original)
                im = im.convert("L") if im.mode == "L" else im.convert("RGB")
            w, h = im.size
            scale = SHORT_SIDE / min(w, h)
            if scale < 1:
                im = im.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
            out = HERE / f"{name}.jpg"
            im.save(out, quality=QUALITY, optimize=True)
            entry["file"] = out.name
            entry["original"] = "/" + rel
            entry["original_sha256"] = hashlib.sha256(raw).hexdigest()
            entry["processing"] = f"scaled (Lanczos) to a shorter side of {SHORT_SIDE} px, JPEG quality {QUALITY}"
            path = out
        else:
            entry["package"], entry["path"] = where, rel
            path = package_dir(where) / rel
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        entry["pixels_sha256"] = pixels_sha256(decode(path))
        entry["shape"] = list(decode(path).shape)
        entry.update(source=source, licence=licence, credit=credit)
        entries.append(entry)
    manifest.write_text(json.dumps({"photos": entries}, indent=1, ensure_ascii=True) + "\n")
    counts = {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")}
    print(f"{len(entries)} photos {counts}; committed copies: {sum('file' in e for e in entries)}")


if __name__ == "__main__":
    main()
