"""Job secrets: sealing on the server, the spec's rules, masking in the agent's log streams, and
how each backend hands them to the job without writing them down in clear."""

from __future__ import annotations

import json
import random
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from suanli.agent.backends.local import LocalBackend
from suanli.agent.backends.logstream import Utf8Stream
from suanli.agent.backends.ray import RayBackend
from suanli.agent.backends.slurm import SlurmBackend
from suanli.app.secrets import SecretBox, SecretsUnavailable, open_secrets, seal_spec
from suanli.cli.testing import FakeApi, Harness, make_job
from suanli.core.errors import SpecError
from suanli.core.protocol import AssignedNode, AttemptAssignment
from suanli.core.spec import SECRET_MASK, JobSpec, job_spec_from_data, parse_job_spec
from suanli.core.states import JobState
from tests.unit.test_engine_backends import ScriptedSlurm

TOKEN = "hf_Zq8secretVALUE42"


def assignment(secrets: dict[str, str] | None = None, run: str = "echo hi", **fields: Any) -> AttemptAssignment:
    return AttemptAssignment(
        attempt_id=fields.pop("attempt_id", 1),
        fencing_token=1,
        job_id="jsecret1",
        job_name="t",
        attempt_number=1,
        run=run,
        secrets=secrets or {},
        nodes=[AssignedNode(node="n1", rank=0)],
        **fields,
    )


# -- sealing ------------------------------------------------------------------------------------


def test_sealing_round_trip_with_a_key_file_made_on_first_use(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "home" / "server.key")
    spec = job_spec_from_data({"run": "x", "envs": {"A": "1"}, "secrets": {"HF_TOKEN": TOKEN, "B": "two"}})
    stored, token = seal_spec(spec.model_dump(mode="json", exclude_none=True), box)
    assert stored["secrets"] == {"HF_TOKEN": SECRET_MASK, "B": SECRET_MASK}
    assert stored["envs"] == {"A": "1"}
    assert stored["run"] == "x"
    assert token is not None
    assert TOKEN not in token
    assert TOKEN not in json.dumps(stored)
    key_file = tmp_path / "home" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Another server process on the same home opens it; the stored spec is still a valid spec.
    assert open_secrets(token, SecretBox(key_file)) == {"HF_TOKEN": TOKEN, "B": "two"}
    assert open_secrets(None, box) == {}
    assert job_spec_from_data(stored).secrets == {"HF_TOKEN": SECRET_MASK, "B": SECRET_MASK}


def test_no_secrets_means_no_token(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "server.key")
    stored, token = seal_spec({"run": "x", "secrets": {}}, box)
    assert token is None
    assert stored == {"run": "x", "secrets": {}}
    assert not (tmp_path / "server.key").exists(), "the key is made only when a secret needs it"


def test_a_given_key_rotation_and_a_wrong_key(tmp_path: Path) -> None:

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_old = SecretBox(tmp_path / "unused", old).seal({"A": TOKEN})
    rotated = SecretBox(tmp_path / "unused", f"{new},{old}")
    assert rotated.open(sealed_old) == {"A": TOKEN}
    assert SecretBox(tmp_path / "unused", new).open(rotated.seal({"A": "b"})) == {"A": "b"}
    with pytest.raises(SecretsUnavailable, match="cannot be decrypted"):
        SecretBox(tmp_path / "unused", new).open(sealed_old)
    with pytest.raises(SecretsUnavailable, match="not a Fernet key") as caught:
        SecretBox(tmp_path / "unused", "not-a-key-at-all").seal({"A": "b"})
    assert "not-a-key-at-all" not in str(caught.value), "the key is never echoed"
    assert not (tmp_path / "unused").exists()


# -- the spec -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "envs", "words"),
    [
        ({"SUANLI_TOKEN": TOKEN}, {}, "names starting with SUANLI_ are set by suanli"),
        ({"1BAD": TOKEN}, {}, "is not a valid environment variable name"),
        ({"A-B": TOKEN}, {}, "is not a valid environment variable name"),
        ({"EMPTY": ""}, {}, "must not be empty"),
        ({"BIG": TOKEN + "x" * 32 * 1024}, {}, "at most 32 KiB"),
        ({f"S{i}": TOKEN for i in range(65)}, {}, "at most 64 secrets"),
        ({"HF_TOKEN": TOKEN}, {"HF_TOKEN": "public"}, "HF_TOKEN: a name is in envs or in secrets, not in both"),
        ({"LIST": [TOKEN]}, {}, "valid string"),
    ],
)
def test_spec_rules_for_secrets(secrets: dict[str, Any], envs: dict[str, str], words: str) -> None:
    with pytest.raises(SpecError) as caught:
        job_spec_from_data({"run": "x", "envs": envs, "secrets": secrets})
    rendered = "; ".join(p.render() for p in caught.value.problems)
    assert words in rendered
    assert all(p.field.startswith("secrets") for p in caught.value.problems)
    assert TOKEN not in rendered, "an error never shows a secret's value"


def test_secret_values_stay_out_of_reprs_and_the_yaml_form_works() -> None:
    spec = parse_job_spec("run: x\nsecrets:\n  HF_TOKEN: " + TOKEN + "\n  PORT: 8080\n")
    assert spec.secrets == {"HF_TOKEN": TOKEN, "PORT": "8080"}
    assert TOKEN not in repr(spec)
    assert TOKEN not in str(spec)
    assert TOKEN not in repr(assignment({"HF_TOKEN": TOKEN}))
    assert JobSpec(run="x").secrets == {}


# -- masking ------------------------------------------------------------------------------------


def _feed_all(stream: Utf8Stream, data: bytes, cuts: list[int]) -> list[tuple[int, str]]:
    chunks, start = [], 0
    for end in [*cuts, len(data)]:
        offset, text = stream.feed(data[start:end])
        start = end
        if text:
            chunks.append((offset, text))
    offset, text = stream.feed(b"", final=True)
    if text:
        chunks.append((offset, text))
    return chunks


def _masked(text: str, secrets: list[str]) -> str:
    pattern = "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True))
    return re.sub(pattern, SECRET_MASK, text)


def test_masking_a_secret_split_across_two_chunks_at_every_byte() -> None:
    text = f"token: {TOKEN} and é again {TOKEN}\n"
    data = text.encode()
    for cut in range(len(data) + 1):
        stream = Utf8Stream([TOKEN])
        chunks = _feed_all(stream, data, [cut])
        assert "".join(t for _, t in chunks) == f"token: {SECRET_MASK} and é again {SECRET_MASK}\n", cut
        assert stream.consumed == stream.emitted == len(data)


def test_offsets_stay_those_of_the_raw_log() -> None:
    """Each chunk's offset is where its first raw byte is in the log, so a chunk re-read from
    the accepted offset after a restart has the same key on the server."""
    data = f"a {TOKEN} b\nline two\n{TOKEN[:5]}".encode()
    stream = Utf8Stream([TOKEN])
    off1, text1 = stream.feed(data[:6])  # "a hf_Z": the tail may be a secret: held back
    assert (off1, text1) == (0, "a ")
    assert stream.emitted == 2
    assert stream.held == 4
    off2, text2 = stream.feed(data[6:30])
    assert off2 == 2
    assert text2.startswith(SECRET_MASK)
    raw_end = stream.emitted  # what the server would have accepted
    assert data[:raw_end].decode().replace(TOKEN, SECRET_MASK) == text1 + text2
    # A restarted reader resumes at the accepted offset and carries on with the same bytes.
    again = Utf8Stream([TOKEN])
    again.consumed = again.emitted = raw_end
    off3, text3 = again.feed(data[raw_end:], final=True)
    assert off3 == raw_end
    assert text1 + text2 + text3 == _masked(data.decode(), [TOKEN])


def test_masking_random_chunkings_matches_masking_the_whole() -> None:
    rng = random.Random(7)
    secrets = [TOKEN, "abc", "abcd-π-xyz", "zz"]
    pieces = ["hello ", TOKEN, TOKEN[:7], TOKEN[7:], "abc", "ab", "cd-π-", "xyz", "π", "z", "\n", "é"]
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        data = text.encode()
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        stream = Utf8Stream(secrets)
        chunks = _feed_all(stream, data, cuts)
        out = "".join(t for _, t in chunks)
        assert out == _masked(text, secrets), (text, cuts)
        offsets = [o for o, _ in chunks]
        assert offsets == sorted(set(offsets))
        assert stream.emitted == len(data)


def test_a_long_held_back_prefix_never_stalls_the_reader() -> None:
    secret = "S" * 6000 + "!"
    stream = Utf8Stream([secret])
    data = ("S" * 9000).encode()  # looks like the secret's start for a long time
    read = 0
    for _ in range(100):
        take = min(stream.room(4096), len(data) - read)
        if take <= 0:
            break
        stream.feed(data[read : read + take])
        read += take
    assert read == len(data), "the reader kept reading past what it held back"
    _, text = stream.feed(b"", final=True)
    assert stream.emitted == len(data)
    assert SECRET_MASK not in text


def test_a_stream_without_secrets_is_unchanged() -> None:
    stream = Utf8Stream()
    assert stream.feed("héllo ***".encode()[:2]) == (0, "h")
    assert stream.held == 1
    assert stream.feed("héllo ***".encode()[2:], final=True) == (1, "éllo ***")


# -- the backends -------------------------------------------------------------------------------


def test_local_backend_gives_the_job_its_secrets_and_masks_its_output(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "site", kill_grace_s=0.5)
    run = f'echo "env=$HF_TOKEN"; printf "%s" "$HF_TOKEN" > out.txt; printf "part:{TOKEN[:6]}"; printf "{TOKEN[6:]}\\n"'
    a = assignment({"HF_TOKEN": TOKEN}, run=run)
    backend.start(a, None)
    adir = tmp_path / "site" / "attempts" / "1"
    workdir = adir / "workdir"
    text, deadline = "", time.monotonic() + 20
    while not backend.logs_drained(1):
        assert time.monotonic() < deadline, "the attempt did not end"
        backend.poll()
        text += "".join(c.data for c in backend.read_logs())
        time.sleep(0.02)
    assert (workdir / "out.txt").read_text() == TOKEN, "the job's environment had the value"
    assert text == f"env={SECRET_MASK}\npart:{SECRET_MASK}\n"
    raw = (adir / "rank-0.log").read_text()
    assert TOKEN not in raw, "the supervisor masks before the log reaches the disk"
    assert TOKEN[:6] not in raw
    assert raw == f"env={SECRET_MASK}\npart:{SECRET_MASK}\n"
    assert stat.S_IMODE((adir / "rank-0.log").stat().st_mode) == 0o600
    record = adir / "attempt.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    saved = json.loads(record.read_text())
    assert TOKEN not in record.read_text(), "no secret at rest at the site"
    assert "secrets" not in saved["assignment"]
    assert saved["secret_names"] == ["HF_TOKEN"]
    for path in adir.rglob("*"):
        if path.is_file() and path.name != "out.txt":  # out.txt: the job wrote it itself
            assert TOKEN not in path.read_text(errors="replace"), path
    # A restarted agent adopts the attempt and goes on masking its output.
    second = LocalBackend(tmp_path / "site", kill_grace_s=0.5)
    assert 1 in second.adopt()
    assert "".join(c.data for c in second.read_logs()) == f"env={SECRET_MASK}\npart:{SECRET_MASK}\n"


def test_slurm_gets_secrets_in_sbatch_env_but_never_on_disk(tmp_path: Path) -> None:
    slurm = ScriptedSlurm()
    backend = SlurmBackend(tmp_path, slurm)
    backend.start(assignment({"HF_TOKEN": TOKEN}, gpu_type="H100"), None)
    [job] = slurm.submitted
    assert job.env["HF_TOKEN"] == TOKEN
    assert not any(TOKEN in arg for arg in job.sbatch_args()), "not on the command line"
    adir = tmp_path / "attempts" / "1"
    for path in adir.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    record = json.loads((adir / "attempt.json").read_text())
    assert "secrets" not in record["assignment"]
    (adir / "rank-0.log").write_text(f"a {TOKEN[:9]}")
    [chunk] = backend.read_logs()
    assert chunk.data == "a ", "the tail that may be a secret waits for more"
    with (adir / "rank-0.log").open("a") as fh:
        fh.write(f"{TOKEN[9:]} b\n")
    [chunk] = backend.read_logs()
    assert (chunk.offset, chunk.data) == (2, f"{SECRET_MASK} b\n")


class _RecordingRay:
    """Ray's Job Submission client, recording what it is given and what the job would see."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.seen = ""
        self.left: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.kwargs = kwargs
        workdir = Path(kwargs["runtime_env"]["working_dir"])
        copy = workdir.parent / "as-ray-unpacks-it"
        shutil.copytree(workdir, copy)
        done = subprocess.run(
            ["bash", "-c", kwargs["entrypoint"]],
            cwd=copy,
            env={"PATH": "/usr/bin:/bin", **kwargs["runtime_env"]["env_vars"]},
            capture_output=True,
            text=True,
            check=True,
        )
        self.seen = done.stdout
        self.left = sorted(p.name for p in copy.iterdir())
        return str(kwargs["submission_id"])

    def get_job_info(self, job_id: str) -> Any:
        raise NotImplementedError

    def get_job_logs(self, job_id: str) -> str:
        return ""

    def stop_job(self, job_id: str) -> bool:
        return True

    def delete_job(self, job_id: str) -> bool:
        return True


def test_ray_keeps_secrets_out_of_env_vars_and_the_entrypoint_sources_them(tmp_path: Path) -> None:
    ray = _RecordingRay()
    backend = RayBackend(tmp_path, jobs=ray)
    weird = 'it\'s a $value with "quotes"\nand a newline'
    backend.start(assignment({"HF_TOKEN": TOKEN, "WEIRD": weird}, run='printf "%s|%s" "$HF_TOKEN" "$WEIRD"'), None)
    env_vars = ray.kwargs["runtime_env"]["env_vars"]
    assert "HF_TOKEN" not in env_vars
    assert TOKEN not in json.dumps(ray.kwargs)
    assert ray.seen.endswith(f"{TOKEN}|{weird}")
    assert ".suanli-secrets.sh" not in ray.left, "the job's copy is deleted before setup runs"
    staged = tmp_path / "attempts" / "1" / "workdir"
    assert not (staged / ".suanli-secrets.sh").exists(), "the agent's copy goes once Ray has the upload"


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_secret_options_merge_into_the_spec(tmp_path: Path) -> None:
    harness = Harness(FakeApi(jobs=[make_job("j-new", JobState.PENDING)]))
    spec = tmp_path / "job.yaml"
    spec.write_text("run: x\nsecrets: {A: from-file, B: keep}\n")
    result = harness.run(
        "submit", str(spec), "--secret", "A", "--secret", "C=given=with=equals", env={"A": "from-shell"}
    )
    assert result.exit_code == 0, result.output
    assert harness.api.submitted[0]["spec"]["secrets"] == {"A": "from-shell", "B": "keep", "C": "given=with=equals"}


def test_cli_secret_errors_are_usage_errors(tmp_path: Path) -> None:
    harness = Harness(FakeApi(jobs=[make_job("j-new", JobState.PENDING)]))
    spec = tmp_path / "job.yaml"
    spec.write_text("run: x\nenvs: {B: public}\n")
    missing = harness.run("submit", str(spec), "--secret", "NOT_SET_ANYWHERE_42", env={"NOT_SET_ANYWHERE_42": None})
    assert missing.exit_code == 2
    assert "$NOT_SET_ANYWHERE_42 is not set" in missing.stderr
    clash = harness.run("submit", str(spec), "--secret", f"B={TOKEN}")
    assert clash.exit_code == 2
    assert "in envs or in secrets" in clash.stderr
    assert TOKEN not in clash.output
    reserved = harness.run("submit", str(spec), "--secret", "SUANLI_X=1")
    assert reserved.exit_code == 2
    assert "SUANLI_" in reserved.stderr
    assert harness.api.requests == []
