"""check_tblog.py — prove that TensorBoard itself reads libsd's event files.

Run in the reference env after `make` (needs build/tests/util/tb_tool):
    .venv-ref/bin/python tests/ref/check_tblog.py
Writes an event file with tb_tool (scalars, an image, a text entry), loads it
with tensorboard's EventAccumulator and checks every value. Not part of make
check (.venv-test has no tensorboard). Exit status 0 = all good.
"""
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import tensorboard

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("SD_BUILD", "build")
TB_TOOL = os.path.join(ROOT, BUILD, "tests", "util", "tb_tool")


def main():
    tmp = tempfile.mkdtemp(prefix="sdref-tb-")
    png_path = os.path.join(tmp, "img.png")
    arr = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(png_path)
    logdir = os.path.join(tmp, "run")
    out = subprocess.run([TB_TOOL, "write", logdir, png_path, "6", "9", "3"], check=True, capture_output=True,
                         text=True).stdout.strip()
    print(f"tensorboard {tensorboard.__version__}: reading {out}")

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    print("tags:", {k: v for k, v in tags.items() if v})
    assert set(tags["scalars"]) == {"train/loss", "train/lr", "train/big_step"}, tags
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert loss == [(s, float(np.float32(1.0 / (s + 1)))) for s in range(10)], loss
    lr = [(e.step, e.value) for e in acc.Scalars("train/lr")]
    assert lr == [(s, float(np.float32(1e-4 * s))) for s in range(10)], lr
    big = [(e.step, e.value) for e in acc.Scalars("train/big_step")]
    assert big == [(1 << 40, -2.5)], big
    imgs = acc.Images("samples/0")
    assert len(imgs) == 1 and imgs[0].step == 5 and (imgs[0].height, imgs[0].width) == (6, 9), imgs
    decoded = np.asarray(Image.open(io.BytesIO(imgs[0].encoded_image_string)))
    assert np.array_equal(decoded, arr)
    texts = acc.Tensors("config")
    assert len(texts) == 1 and texts[0].step == 0
    tp = texts[0].tensor_proto
    assert tp.dtype == 7 and list(tp.string_val) == [b"lr: 1e-4\nbatch: **16**"], tp
    md = acc.SummaryMetadata("config")
    assert md.plugin_data.plugin_name == "text", md
    print(f"OK: {len(loss)} + {len(lr)} + {len(big)} scalars, 1 image {imgs[0].width}x{imgs[0].height}, "
          f"1 text; wall times {acc.Scalars('train/loss')[0].wall_time:.3f}..")

    # the text plugin's own reader turns it into markdown HTML
    try:
        from tensorboard.plugins.text import text_plugin
        html = text_plugin.text_array_to_html(np.array(tp.string_val[0]), enable_markdown=True)
        assert "<strong>16</strong>" in html, html
        print("text plugin renders:", html.replace("\n", " ")[:80])
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
