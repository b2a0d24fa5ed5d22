"""Writes the generated part of the fuzz seed corpora (Tests/Fuzz/corpus/*/gen-*).

The rest of each corpus is copied from the test fixtures (PngSuite, libjpeg-turbo's test
images, numpy-written .npy files, a PyTorch-written safetensors file). These extra seeds are
tiny (fast executions) and reach branches the fixtures do not: CMYK, 4:4:4 and progressive
JPEGs at 16×16, EXIF orientations, every safetensors dtype, 0-d and zero-size tensors,
metadata. Needs Pillow (Tools/requirements.txt); run from the repository root.
"""
import json
import struct
from pathlib import Path

from PIL import Image

root = Path("Tests/Fuzz/corpus")
src = Image.open("Tests/ImageIOTests/Fixtures/testorig.jpg").convert("RGB").crop((100, 60, 116, 76))

jpeg = root / "jpeg"
src.save(jpeg / "gen-16-baseline.jpg", quality=80)
src.save(jpeg / "gen-16-progressive.jpg", quality=80, progressive=True)
src.save(jpeg / "gen-16-444.jpg", quality=80, subsampling=0)
src.convert("L").save(jpeg / "gen-16-gray.jpg", quality=80)
src.convert("CMYK").save(jpeg / "gen-16-cmyk.jpg", quality=80)
exif = Image.Exif()
exif[0x0112] = 8
src.resize((16, 8)).save(jpeg / "gen-16x8-exif8.jpg", quality=80, exif=exif.tobytes())

png = root / "png"
small = src.resize((5, 3))
small.save(png / "gen-5x3-rgb.png")
small.convert("RGBA").save(png / "gen-5x3-rgba-interlaced.png", interlace=1)
small.convert("P").save(png / "gen-5x3-palette.png")
small.convert("LA").save(png / "gen-5x3-gray-alpha.png")


def safetensors(path, tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    (root / "safetensors" / path).write_bytes(struct.pack("<Q", len(h)) + h + data)


safetensors("gen-dtypes.safetensors", {
    "f32": ("F32", [2, 2], struct.pack("<4f", 1.0, -2.5, float("inf"), float("nan"))),
    "f16": ("F16", [3], struct.pack("<3H", 0x3C00, 0x8001, 0x7E00)),
    "bf16": ("BF16", [1, 2], struct.pack("<2H", 0x3F80, 0xFF80)),
    "f64": ("F64", [1], struct.pack("<d", 1e300)),
    "i64": ("I64", [2], struct.pack("<2q", -1, 2**62)),
    "i32": ("I32", [1], struct.pack("<i", -7)),
    "i16": ("I16", [1], struct.pack("<h", -3)),
    "i8": ("I8", [2], struct.pack("<2b", -128, 127)),
    "u64": ("U64", [1], struct.pack("<Q", 2**64 - 1)),
    "u32": ("U32", [1], struct.pack("<I", 7)),
    "u16": ("U16", [1], struct.pack("<H", 65535)),
    "u8": ("U8", [3], bytes([0, 1, 255])),
    "bool": ("BOOL", [2], bytes([0, 1])),
}, metadata={"format": "pt", "note": "tab\tquote\"\u00e9"})
safetensors("gen-corners.safetensors", {
    "scalar": ("F32", [], struct.pack("<f", 3.0)),
    "empty": ("F32", [0, 4], b""),
    "gamma.scale": ("F32", [1, 1, 1, 1], struct.pack("<f", 0.5)),
})
(root / "safetensors" / "gen-empty-header.safetensors").write_bytes(struct.pack("<Q", 8) + b"{}      ")
