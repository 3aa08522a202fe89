"""podman for the deploy tests: settings of the suite's own, the local Debian base, builds.

No registry can be reached from the test machines, so nothing is pulled: the base image is
made with debootstrap from the Debian mirror apt uses (once per machine; later runs find
it), and every image is built from it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: runc and lower limits than podman's defaults (see the file).
CONTAINERS_CONF = HERE / "containers.conf"
BASE_IMAGE = "localhost/debian:bookworm"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Serialises making the base image between test runs on one machine.
BASE_LOCK = Path(tempfile.gettempdir()) / "mailroom-debian-base.lock"
INSTALL_HINT = "`make test` installs it (scripts/install-system-deps.sh)"


def environment(**extra: str) -> dict[str, str]:
    """The environment of every podman and podman-compose call of the tests."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **extra}


def podman(
    *args: str, timeout: float = 300, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; raises ``AssertionError`` with its output when it fails and
    ``check`` is set."""
    done = subprocess.run(
        [_binary("podman", "podman"), *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_size(name: str) -> int:
    """The image's size in bytes, as ``podman images`` counts it."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def debian_mirror(sources: Iterable[Path]) -> str:
    """The mirror apt uses for Debian ``bookworm`` itself (not -security or -updates), from
    one-line ``deb URL SUITE ...`` files and deb822 ``.sources`` files."""
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                return fields.get("URIs", "").split()[0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()  # drop [arch=... signed-by=...]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return DEFAULT_MIRROR


def apt_sources() -> list[Path]:
    folder = Path("/etc/apt/sources.list.d")
    listed = sorted(folder.glob("*.sources")) + sorted(folder.glob("*.list"))
    return [*listed, Path("/etc/apt/sources.list")]


def ensure_base_image() -> bool:
    """Make ``localhost/debian:bookworm`` unless it exists; True when it was made now."""
    with _locked(BASE_LOCK):
        if image_exists(BASE_IMAGE):
            return False
        mirror = debian_mirror(apt_sources())
        with tempfile.TemporaryDirectory(prefix="mailroom-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _run(
                [_binary("debootstrap", "debootstrap"), "--variant=minbase", SUITE, str(rootfs)]
                + [mirror],
                timeout=900,
            )
            _slim(rootfs)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            assert tar.stdout is not None
            imported = subprocess.run(
                [_binary("podman", "podman"), "import", "-", BASE_IMAGE],
                stdin=tar.stdout,
                env=environment(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise AssertionError(f"podman import of the Debian base failed:\n{imported.stderr}")
        return True


def build(
    image: str,
    context: Path,
    *,
    dockerfile: Path | None = None,
    base: str = BASE_IMAGE,
    timeout: float = 1200,
) -> None:
    """``podman build`` with the base image as ``BASE`` and this machine's CA bundle offered
    to pip as the ``pipca`` secret. Docker's format, so that HEALTHCHECK is kept."""
    args = ["build", "--format", "docker", "--build-arg", f"BASE={base}", "-t", image]
    if CA_BUNDLE.exists():
        args += ["--secret", f"id=pipca,src={CA_BUNDLE}"]
    if dockerfile is not None:
        args += ["-f", str(dockerfile)]
    done = podman(*args, str(context), timeout=timeout, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise AssertionError(f"podman build of {image} failed ({done.returncode}):\n{tail}")


def _slim(rootfs: Path) -> None:
    """What an image needs no copy of: downloaded packages and package lists (every build
    runs apt-get update first, as on debian:bookworm-slim)."""
    for folder in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
        for path in folder.glob("*"):
            if path.is_file():
                path.unlink()
    for cache in (rootfs / "var/cache/apt").glob("*.bin"):
        cache.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], *, timeout: float) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise AssertionError(f"{command[0]} failed ({done.returncode}):\n{tail}")


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise AssertionError(
            f"{name} not found: install the Debian package {package!r}; {INSTALL_HINT}"
        )
    return found
