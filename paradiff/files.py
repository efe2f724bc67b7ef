"""Every file paradiff reads or writes on a user's behalf goes through this module.

Reading (`open_regular`, `read_text`, `open_image`): only regular files (a FIFO, a device or a
folder is refused at once, never waited on), at most a stated size, and, where a folder is named,
only files inside it (symlinks followed, then checked). Images are read only in the formats of
`IMAGE_FORMATS`, and their size is taken from the header and refused beyond `MAX_IMAGE_SIDE`
pixels a side before a pixel is decoded.

Writing (`safe_target`, `write_atomic`, `move_into`): only below a given output folder, never
through a symbolic link or a file below it. Deleting (`make_scratch`, `remove_scratch`): only a
scratch folder paradiff made, known by the marker file it wrote inside and by the token recorded
where its caller keeps such records (a manifest, a run marker).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import threading
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps

MAX_IMAGE_SIDE = 4096  # input images: at most this many pixels a side (read from the header)
MAX_IMAGE_BYTES = 256 << 20  # an input image file: at most 256 MiB
MAX_TEXT_BYTES = 256 << 20  # a JSONL, JSON or text file paradiff reads: at most 256 MiB
# The formats whose header states the size that decoding produces (ICO, ICNS, … embed other
# images whose size the header does not tell, so they are not read).
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "PPM")
SCRATCH_MARKER = ".paradiff-scratch"  # written inside every scratch folder paradiff makes
SAVE_TOKEN = "checkpoint-scratch"  # the token of a checkpoint's scratch folder (`save_model`)


class FileInputError(ValueError):
    """A file that paradiff will not read or write (missing, not a regular file, outside its
    folder, too large, through a symbolic link)."""


class ImageInputError(FileInputError):
    """An input image that cannot be used (unreadable, too large, too elongated)."""


# -- reading ----------------------------------------------------------------------------------
def check_inside(path: str | os.PathLike, root: str | os.PathLike, what: str = "file") -> Path:
    """`path` with its symlinks resolved; FileInputError unless it lies inside `root`."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise FileInputError(f"{what} {os.fspath(path)} is outside the folder {os.fspath(root)}")
    return resolved


def open_regular(
    path: str | os.PathLike,
    inside: str | os.PathLike | None = None,
    limit: int | None = MAX_TEXT_BYTES,
    what: str = "file",
) -> IO[bytes]:
    """A binary handle on `path`, which must be a regular file (checked on the open handle, so a
    FIFO never blocks), at most `limit` bytes, and inside `inside` when given."""
    if inside is not None:
        check_inside(path, inside, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileInputError(f"cannot read {what} {os.fspath(path)}: no such file") from None
    except OSError as err:
        raise FileInputError(
            f"cannot read {what} {os.fspath(path)}: {err.strerror or err}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "it is a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise FileInputError(f"cannot read {what} {os.fspath(path)}: {kind}")
        if limit is not None and info.st_size > limit:
            raise FileInputError(
                f"{what} {os.fspath(path)} has {info.st_size} bytes, more than the {limit} "
                "paradiff reads"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, inside=None, limit: int | None = MAX_TEXT_BYTES, what: str = "file") -> bytes:
    with open_regular(path, inside, limit, what) as handle:
        return handle.read() if limit is None else handle.read(limit + 1)[: limit + 1]


def read_text(path, inside=None, limit: int | None = MAX_TEXT_BYTES, what: str = "file") -> str:
    """The UTF-8 text of a regular file (see `open_regular`)."""
    data = read_bytes(path, inside, limit, what)
    if limit is not None and len(data) > limit:
        raise FileInputError(f"{what} {os.fspath(path)} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileInputError(f"{what} {os.fspath(path)} is not UTF-8 text") from None


def first_line(err: BaseException) -> str:
    """An error's message in one line: its first, or the error's type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_json_object(path: str | os.PathLike, limit: int | None = MAX_TEXT_BYTES) -> dict:
    """The JSON object a file holds; FileInputError naming the file when it is unreadable, not
    JSON or not an object."""
    try:
        value = json.loads(read_text(path, limit=limit))
    except ValueError as err:
        if isinstance(err, FileInputError):
            raise
        raise FileInputError(f"cannot read {path}: {first_line(err)}") from None
    if not isinstance(value, dict):
        raise FileInputError(f"{path} is not a JSON object")
    return value


def _known_formats() -> list[str]:
    """The formats of IMAGE_FORMATS this Pillow reads (its plugins registered once)."""
    if not all(f in Image.OPEN for f in IMAGE_FORMATS):
        Image.init()
    return [f for f in IMAGE_FORMATS if f in Image.OPEN]


def check_image_size(width: int, height: int, name: str) -> None:
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ImageInputError(
            f"image {name} is {width}x{height} pixels: paradiff reads images of at most "
            f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
        )


def open_image(
    source: str | os.PathLike | bytes,
    inside: str | os.PathLike | None = None,
    name: str | None = None,
    decode: bool = True,
) -> Image.Image:
    """A decoded image of a path (a regular file, inside `inside` when given) or of file bytes,
    its EXIF orientation applied; with `decode` False only its header is read (the returned
    image is closed: use its size and mode only). The format must be one of `IMAGE_FORMATS` and
    the header's size at most `MAX_IMAGE_SIDE` a side: checked before decoding."""
    import io

    if isinstance(source, bytes | bytearray):
        name = name or "(image bytes)"
        if len(source) > MAX_IMAGE_BYTES:
            raise ImageInputError(f"image {name} is larger than {MAX_IMAGE_BYTES} bytes")
        handle: IO[bytes] = io.BytesIO(source)
    else:
        name = name or os.fspath(source)
        try:
            handle = open_regular(source, inside, MAX_IMAGE_BYTES, "image")
        except FileInputError as err:
            raise ImageInputError(str(err)) from None
    with handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
        try:
            with Image.open(handle, formats=_known_formats()) as opened:
                check_image_size(opened.width, opened.height, name)
                if not decode:
                    return opened
                opened.load()
                return ImageOps.exif_transpose(opened)
        except ImageInputError:
            raise
        except Image.DecompressionBombError:
            raise ImageInputError(
                f"image {name} is larger than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
            ) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError(
                f"cannot read image {name}: not a {', '.join(IMAGE_FORMATS)} image"
            ) from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
            raise ImageInputError(f"cannot read image {name}: {first_line(err)}") from None


# -- writing ----------------------------------------------------------------------------------
def safe_target(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """`root / relative` for writing or deleting: `relative` must stay below `root` (no '..',
    not absolute), and no part of it that exists may be a symbolic link, nor a parent a file."""
    root, relative = Path(root), Path(relative)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise FileInputError(f"{relative} is not a path inside {root}")
    path = root
    for index, part in enumerate(relative.parts):
        path = path / part
        if path.is_symlink():
            raise FileInputError(
                f"{path} is a symbolic link: paradiff does not write through links"
            )
        if index < len(relative.parts) - 1 and path.exists() and not path.is_dir():
            raise FileInputError(f"{path} is a file, not a folder")
    return path


def file_above(path: str | os.PathLike) -> Path | None:
    """The outermost parent of `path` that exists and is no folder (nothing can be written
    below it), or None."""
    blocked = [p for p in Path(path).absolute().parents if p.exists() and not p.is_dir()]
    return blocked[-1] if blocked else None


def make_dirs(root: Path, relative: str | os.PathLike) -> Path:
    """Create `root / relative` (see `safe_target`), its parents too."""
    path = safe_target(root, relative)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, text: str | bytes, root: Path | None = None) -> None:
    """Write `path` through a temporary file beside it (readers never see half of it); the
    rename replaces a link there rather than following it. With `root`, `path` must be below
    it and reached through no link (`safe_target`)."""
    if root is not None:
        path = safe_target(root, path.relative_to(root))
    # the name `is_write_temp` recognises
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_write_temp(name: str, target: str) -> bool:
    """Whether `name` is the temporary file `write_atomic` writes `target` through (a write in
    progress, or one a killed process left)."""
    return re.fullmatch(r"\." + re.escape(target) + r"\.\d+\.\d+\.tmp", name) is not None


def move_into(source: Path, root: Path, relative: str | os.PathLike) -> Path:
    """Move the file `source` to `root / relative` (see `safe_target`), parents created."""
    target = safe_target(root, relative)
    if target.parent != root:
        make_dirs(root, target.parent.relative_to(root))
    os.replace(source, target)
    return target


# -- scratch folders --------------------------------------------------------------------------
def scratch_name(prefix: str) -> tuple[str, str]:
    """(folder name, token) of a new scratch folder: `<prefix><pid>-<random>`; the caller
    records the token before `make_scratch` creates it."""
    return f"{prefix}{os.getpid()}-{secrets.token_hex(6)}", secrets.token_hex(16)


def make_scratch(parent: Path, name: str, token: str) -> Path:
    """Create the scratch folder `parent / name` with its marker file holding `token`."""
    path = parent / name
    path.mkdir()
    (path / SCRATCH_MARKER).write_text(json.dumps({"token": token, "pid": os.getpid()}))
    return path


def scratch_owner(path: Path) -> int | None:
    """The pid recorded in a scratch folder's marker (None when unreadable)."""
    try:
        record = json.loads(read_text(path / SCRATCH_MARKER, limit=4096))
        return record["pid"] if isinstance(record.get("pid"), int) else None
    except (FileInputError, ValueError, AttributeError, KeyError):
        return None


def is_scratch(path: Path, token: str) -> bool:
    """Whether `path` is a folder (no link) holding the marker paradiff wrote with `token`."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        record = json.loads(read_text(path / SCRATCH_MARKER, limit=4096))
    except (FileInputError, ValueError):
        return False
    return isinstance(record, dict) and record.get("token") == token


def remove_scratch(path: Path, token: str) -> bool:
    """Delete the scratch folder `path` if it is one paradiff made with `token` (else leave
    it); True when it is gone."""
    if not path.exists() and not path.is_symlink():
        return True
    if not is_scratch(path, token):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, someone else's
        return True
    return True
