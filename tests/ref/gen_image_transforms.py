"""Golden for the training-image transforms, made by the real torchvision.

diffusers' train_text_to_image.py:
    Resize(resolution, interpolation), CenterCrop(resolution), ToTensor, Normalize([0.5], [0.5])
ppdiffusers (straight resize): Resize((H, W), BILINEAR), CenterCrop((H, W)).
Run on a few small committed images (written here once if missing:
deterministic patterns as PNG RGB, JPEG portrait, PNG palette), for every
torchvision InterpolationMode and a down- and an up-scaling resolution.
Stored: resized size, output shape and the sha256 of the HWC uint8 output
(tests/py/test_image_parity.py requires bit-identical pixels), plus one
ToTensor+Normalize float32 CHW tensor.

    .venv-ref/bin/python tests/ref/gen_image_transforms.py
"""
import hashlib
import json
import os

import numpy as np
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "image_transforms")


def pattern(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x * 3 + y * 5) % 256.0], -1)
    img += rng.normal(0, 24, (h, w, 3))
    img[h // 4:h // 2 + 1, w // 3:2 * w // 3 + 1] = (250, 8, 128)
    img[((x // 2 + y // 2) % 2 == 0) & (y > 3 * h // 4)] = (0, 0, 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def inputs():
    os.makedirs(OUT, exist_ok=True)
    specs = [("landscape_47x31.png", lambda p: Image.fromarray(pattern(47, 31, 1)).save(p)),
             ("portrait_29x53.jpg", lambda p: Image.fromarray(pattern(29, 53, 2)).save(p, quality=90)),
             ("palette_40x40.png", lambda p: Image.fromarray(pattern(40, 40, 3)).quantize(32).save(p))]
    for name, write in specs:
        path = os.path.join(OUT, name)
        if not os.path.exists(path):  # committed: keep the bytes stable
            write(path)
    return [name for name, _ in specs]


def main():
    cases = []
    modes = ["nearest", "nearest_exact", "bilinear", "bicubic", "box", "hamming", "lanczos"]
    for name in inputs():
        with Image.open(os.path.join(OUT, name)) as im:
            img = im.convert("RGB")
        for res in (16, 64):
            for mode in modes:
                interp = getattr(InterpolationMode, mode.upper())
                resized = transforms.Resize(res, interpolation=interp)(img)
                out = transforms.CenterCrop(res)(resized)
                a = np.array(out)
                c = {"image": name, "kind": "diffusers", "resolution": res, "interpolation": mode,
                     "resized_wh": list(resized.size), "shape_hwc": list(a.shape),
                     "sha256_hwc_u8": hashlib.sha256(a.tobytes()).hexdigest()}
                if name.startswith("portrait") and res == 16 and mode == "lanczos":
                    t = transforms.Normalize([0.5], [0.5])(transforms.ToTensor()(out))
                    c["tensor_file"] = "portrait_16_lanczos_chw.f32"
                    t.numpy().astype("<f4").tofile(os.path.join(OUT, c["tensor_file"]))
                cases.append(c)
        for (h, w) in ((24, 40), (60, 20)):
            resized = transforms.Resize((h, w), interpolation=InterpolationMode.BILINEAR)(img)
            out = transforms.CenterCrop((h, w))(resized)
            a = np.array(out)
            cases.append({"image": name, "kind": "ppdiffusers", "resolution": 512, "height": h, "width": w,
                          "interpolation": "bilinear", "resized_wh": list(resized.size), "shape_hwc": list(a.shape),
                          "sha256_hwc_u8": hashlib.sha256(a.tobytes()).hexdigest()})
    import PIL
    import torchvision
    meta = {"generator": "tests/ref/gen_image_transforms.py", "torchvision": torchvision.__version__,
            "pillow": PIL.__version__, "cases": cases}
    with open(os.path.join(OUT, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
