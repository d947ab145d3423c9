"""Container images a job names (``image:`` in the job spec): their shape, checked at submit.

Two kinds. A **reference** as Docker and podman write it, ``[registry[:port]/]path[:tag][@digest]``
(``docker.io/pytorch/pytorch:2.4-cuda12``, ``localhost/suanli-test:1``): a site runs it only if
the image is already in its local store (sites never pull; operators ``podman load`` or
``podman import`` images). An **archive** at the site, ``oci-archive:/path`` or
``docker-archive:/path`` (an absolute path on the site's machines, optionally followed by
``:name:tag`` as podman accepts it).

Only the shape is checked here; whether a site has the image is known at the site, when the
attempt starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: The longest image text accepted (Docker's limit on a reference's name is 255).
MAX_IMAGE = 255
ARCHIVE_KINDS = ("oci-archive", "docker-archive")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$")
#: An archive's path: absolute, made of ordinary path characters (no ',' or '=' a mount option
#: could misread, no control characters, no '..' step).
_ARCHIVE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")

ImageKind = Literal["reference", "oci-archive", "docker-archive"]


@dataclass(frozen=True)
class ImageRef:
    #: The text as the job wrote it (what podman is given).
    text: str
    kind: ImageKind
    #: The archive's path at the site (archives only).
    path: str | None = None

    @property
    def is_archive(self) -> bool:
        return self.kind != "reference"


def parse_image(text: str) -> ImageRef:
    """``text`` as an image; ValueError, in words with an example, when it is not one."""
    shown = repr(text) if not text.isprintable() else f"'{text}'"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    if not text or len(text) > MAX_IMAGE:
        raise ValueError(f"image must be 1-{MAX_IMAGE} characters, e.g. docker.io/pytorch/pytorch:2.4-cuda12")
    kind, sep, rest = text.partition(":")
    if sep and kind in ARCHIVE_KINDS:
        path = rest.split(":", 1)[0]
        name = rest[len(path) + 1 :]
        if not _ARCHIVE_PATH_RE.match(path) or "/../" in f"{path}/" or path.endswith("/"):
            raise ValueError(
                f"{shown}: an archive image names an absolute path to a file at the site, "
                f"e.g. {kind}:/srv/images/train.tar"
            )
        if name and not REFERENCE_RE.match(name):
            raise ValueError(f"{shown}: the name after the archive's path must be like name:tag")
        return ImageRef(text, "oci-archive" if kind == "oci-archive" else "docker-archive", path)
    if "://" in text:
        raise ValueError(
            f"{shown} is not an image reference: write it without a scheme, e.g. docker.io/library/busybox:1"
        )
    if not REFERENCE_RE.match(text):
        raise ValueError(
            f"{shown} is not an image reference: write [registry/]name[:tag][@digest] in lower case, "
            "e.g. docker.io/pytorch/pytorch:2.4-cuda12 or localhost/train:1, or a local archive "
            "oci-archive:/path or docker-archive:/path"
        )
    return ImageRef(text, "reference")
