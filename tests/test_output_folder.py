"""A read-only or full output folder is an error before training starts, not after it: the
CLI's ``--out``, ``--checkpoint-dir`` and ``--plot``, ``ModelCheckpoint``, and the check they
share, :func:`cnnumpy.io.check_writable`.

File permissions do not bind root, and CI runs as root: there the subprocesses run without
the two capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a chmod 555
folder is read-only to them, as to any user. A full folder is a small tmpfs mounted in a
private mount namespace (``unshare``), and a file-size limit (RLIMIT_FSIZE) stands for a disk
that takes a small file but not the model.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnumpy
from cnnumpy import layers
from cnnumpy.callbacks import ModelCheckpoint
from cnnumpy.io import check_writable

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux capabilities and mounts")

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _drop_permission_bypass():
    """preexec_fn: root without the capabilities that ignore file permissions (they are
    dropped from the bounding set, so the executed program never regains them)."""
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if _LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


UNPRIVILEGED = _drop_permission_bypass if os.geteuid() == 0 else None


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def cli(args, cwd, preexec_fn=UNPRIVILEGED, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "cnnumpy", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for kind, array in (("images-idx3", rng.integers(0, 255, (16, 12, 12))),
                        ("labels-idx1", np.arange(16) % 3)):
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        header += b"".join(struct.pack(">I", d) for d in array.shape)
        (folder / f"train-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    return folder


@pytest.fixture
def read_only(tmp_path):
    """A chmod 555 folder that the subprocesses cannot write to (checked first)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'w')",
                                str(folder / "probe")], capture_output=True,
                               preexec_fn=UNPRIVILEGED)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop the permission-bypassing capabilities here: {exc}")
    if probe.returncode == 0:
        pytest.skip("a chmod 555 folder is still writable to a subprocess here")
    yield folder
    folder.chmod(0o755)


def assert_fails_before_training(result, *names):
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0]
    assert "Epoch" not in result.stdout  # the check came first


@pytest.mark.parametrize("flag, target", [
    ("--out", "m.safetensors"), ("--checkpoint-dir", ""), ("--checkpoint-dir", "new"),
    ("--plot", "curves.png")])
def test_a_read_only_folder_fails_before_training(idx_folder, read_only, tmp_path, flag,
                                                  target):
    path = str(read_only / target) if target else str(read_only)
    result = cli(["train", "--data", str(idx_folder), "--model", "simple", "--epochs", "1",
                  "--out", str(tmp_path / "ok.safetensors"), flag, path], tmp_path)
    assert_fails_before_training(result, flag, str(read_only), "Permission denied")
    assert os.listdir(read_only) == []
    assert not (tmp_path / "ok.safetensors").exists()


def _mount_namespace(folder):
    """A command prefix under which ``mount -t tmpfs`` works (a private mount namespace,
    gone with the process), or the reason there is none."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    tries = [["unshare", "--mount"]] if os.geteuid() == 0 else []
    tries.append(["unshare", "--user", "--map-root-user", "--mount"])
    errors = []
    for prefix in tries:
        probe = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"',
                                str(folder)], capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix
        errors.append(f"{' '.join(prefix)}: {probe.stderr.strip()}")
    return "; ".join(errors)


# Mount a tmpfs of $1 bytes at $0, fill it up unless $2 is "no", then run the rest.
MOUNT_AND_RUN = textwrap.dedent("""\
    mnt=$0 size=$1 fill=$2; shift 2
    mount -t tmpfs -o size="$size" tmpfs "$mnt" || exit 99
    [ "$fill" = no ] || head -c 1048576 /dev/zero > "$mnt/fill" 2>/dev/null
    exec "$@"
""")


@pytest.mark.parametrize("disk, flag", [
    ("a full tmpfs", "--out"), ("a tmpfs smaller than the model", "--out"),
    ("a tmpfs smaller than the model", "--checkpoint-dir"), ("a file-size limit", "--out")])
def test_a_full_folder_fails_before_training(idx_folder, tmp_path, disk, flag):
    folder = tmp_path / "disk"
    folder.mkdir()
    target = str(folder / "m.safetensors") if flag == "--out" else str(folder)
    args = ["train", "--data", str(idx_folder), "--model", "lenet", "--epochs", "1",
            "--out", str(tmp_path / "ok.safetensors"), flag, target]
    if disk == "a file-size limit":  # lenet's file (about 500 KB) is over the 64 KiB limit
        result = cli(args, tmp_path, preexec_fn=_limit_file_size)
        assert_fails_before_training(result, flag, str(folder), "File too large")
        assert os.listdir(folder) == []
        return
    prefix = _mount_namespace(folder)
    if isinstance(prefix, str):
        pytest.skip(f"cannot mount a tmpfs here: {prefix}")
    size, fill = ("64k", "yes") if disk == "a full tmpfs" else ("256k", "no")
    result = cli(args, tmp_path, preexec_fn=None,
                 prefix=[*prefix, "sh", "-c", MOUNT_AND_RUN, str(folder), size, fill])
    assert_fails_before_training(result, flag, str(folder), "No space left on device")


def tiny_model():
    cnnumpy.set_seed(0)
    model = cnnumpy.Sequential([layers.Flatten(input_shape=(4, 4, 1)), layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


CHECKPOINT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, cnnumpy
    from cnnumpy import layers
    from cnnumpy.callbacks import ModelCheckpoint
    model = cnnumpy.Sequential([layers.Flatten(input_shape=(4, 4, 1)), layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy")
    try:
        model.fit(np.zeros((8, 4, 4, 1)), np.zeros(8, int), epochs=2, verbose=0,
                  callbacks=[ModelCheckpoint(sys.argv[1] + "/ck-{epoch}.safetensors")])
    except PermissionError as exc:
        print(exc, "- steps taken:", model.optimizer.iterations)
""")


def test_model_checkpoint_checks_its_folder_before_the_first_epoch(read_only, tmp_path):
    result = subprocess.run([sys.executable, "-c", CHECKPOINT_SCRIPT, str(read_only)],
                            capture_output=True, text=True, preexec_fn=UNPRIVILEGED)
    assert f"ModelCheckpoint: cannot write to folder '{read_only}'" in result.stdout
    assert result.stdout.strip().endswith("steps taken: 0"), result.stdout + result.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = tiny_model()
    with pytest.raises(OSError, match="ModelCheckpoint: cannot create the folder"):
        model.fit(np.zeros((8, 4, 4, 1)), np.zeros(8, int), verbose=0,
                  callbacks=[ModelCheckpoint(str(blocker / "{epoch}" / "ck.safetensors"))])
    assert model.optimizer.iterations == 0


def test_check_writable_names_the_folder_and_never_replaces_a_device(tmp_path):
    model = tiny_model()
    model.build()
    check_writable(str(tmp_path / "m.safetensors"), model, "--out")
    assert os.listdir(tmp_path) == []  # the trial file is gone
    (tmp_path / "a-file").write_text("")
    for path, error, match in [
            (tmp_path / "missing" / "m.safetensors", FileNotFoundError, "missing"),
            (tmp_path / "a-file" / "m.safetensors", NotADirectoryError, "Not a directory"),
            (tmp_path, IsADirectoryError, "is a folder")]:
        with pytest.raises(error, match=f"--out: .*{match}"):
            check_writable(str(path), model, "--out")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(IsADirectoryError, match="not a regular file"):
        model.save(str(fifo))
    assert fifo.is_fifo()
