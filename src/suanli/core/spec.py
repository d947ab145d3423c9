"""The job spec: what a tenant asks for. YAML in, validated pydantic models out.

The format follows SkyPilot's task YAML, which most users in this field already know.
``accelerators`` is per node; ``num_nodes`` nodes form a gang that starts together or not at all.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from suanli.core.arrays import TaskArray, parse_array
from suanli.core.dependencies import Dependency, When, parse_dependency
from suanli.core.images import parse_image
from suanli.core.resources import (
    MAX_DURATION_S,
    MAX_PRICE_CNY_PER_HOUR,
    Accelerator,
    check_price,
    parse_accelerator,
    parse_duration,
    parse_minimum,
)
from suanli.core.services import ServiceSpec
from suanli.core.validation import parse_yaml_as, validate_data

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Label keys as Kubernetes has them: an optional DNS prefix and '/', then a name of 1-63
#: letters, digits, '.', '_' or '-' that starts and ends with a letter or digit.
LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_ENVS = 256
MAX_ENV_VALUE_BYTES = 32 * 1024
#: Largest ``run`` or ``setup`` command; longer scripts belong in the workdir.
MAX_COMMAND_BYTES = 64 * 1024
RESERVED_ENV_PREFIX = "SUANLI_"
#: What the server stores, shows and returns in place of a secret's value (``secrets``).
SECRET_MASK = "***"  # noqa: S105 - the mask, not a password
MAX_SECRETS = 64
MAX_SECRET_BYTES = 32 * 1024
#: Most jobs one job may wait for (``after``).
MAX_AFTER = 100


def _shown(text: str) -> str:
    """``text`` quoted for an error message: control characters escaped, long text cut."""
    shown = repr(text) if not text.isprintable() else f"'{text}'"
    return shown if len(shown) <= 80 else shown[:77] + "..."


class StrictModel(BaseModel):
    """Unknown fields are errors (with a 'did you mean'), never silently ignored; so are NaN and
    infinity in any number (JSON bodies may carry them, and they break every sum they enter)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _to_accelerator(value: Any) -> Any:
    if isinstance(value, str):
        return parse_accelerator(value)
    return value


AcceleratorField = Annotated[Accelerator, BeforeValidator(_to_accelerator), PlainSerializer(str, return_type=str)]


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """Higher runs first."""
        return {"low": 0, "normal": 1, "high": 2}[self.value]


class Resources(StrictModel):
    #: Per node; a list means "any one of these types" (all nodes of a job get the same type).
    accelerators: list[AcceleratorField] = Field(default_factory=list)
    #: Minimum CPUs per node ("16+" and 16 mean the same).
    cpus: float = 1
    #: Minimum memory per node, GiB.
    memory: float = 1
    #: Nodes in the gang; all start at one site together or none do.
    num_nodes: int = 1

    @field_validator("accelerators", mode="before")
    @classmethod
    def _accelerators(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(",")] if "," in value else [value]
        if isinstance(value, dict):
            return [f"{k}:{v}" for k, v in value.items()]
        return value

    @field_validator("accelerators")
    @classmethod
    def _distinct(cls, value: list[Accelerator]) -> list[Accelerator]:
        types = [a.type for a in value]
        if len(set(types)) != len(types):
            raise ValueError("each GPU type may appear once in the list of alternatives")
        return value

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: Any) -> float:
        return parse_minimum(value, "cpus")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> float:
        if isinstance(value, str) and value.strip().lower().endswith(("gb", "gib", "g")):
            value = value.strip().lower().rstrip("bi").rstrip("g").strip() or value
        return parse_minimum(value, "memory", " (GiB)")

    @field_validator("num_nodes")
    @classmethod
    def _num_nodes(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"num_nodes must be at least 1, not {value}")
        if value > 4096:
            raise ValueError(f"num_nodes {value} is more than any network has")
        return value

    def gpu_options(self) -> list[Accelerator]:
        return list(self.accelerators)

    def describe(self) -> str:
        gpus = " or ".join(f"{a.count} × {a.type}" for a in self.accelerators) or "no GPU"
        per = f"{self.num_nodes} nodes × " if self.num_nodes > 1 else ""
        cpus = f"{self.cpus:g} CPU" + ("" if self.cpus == 1 else "s")
        return f"{per}{gpus}, {cpus}, {self.memory:g} GiB"


class Placement(StrictModel):
    #: Only these regions; empty means any.
    regions: list[str] = Field(default_factory=list)
    #: CNY per GPU-hour, hard limit.
    max_price_per_gpu_hour: float | None = Field(default=None, gt=0, le=MAX_PRICE_CNY_PER_HOUR)
    #: From the tenant's home region, hard limit.
    max_latency_ms: float | None = Field(default=None, gt=0)
    #: What to favour among the sites that fit: balanced (price and latency), time, cost, latency.
    optimize: Literal["balanced", "time", "cost", "latency"] = "balanced"

    @field_validator("regions", mode="before")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("max_price_per_gpu_hour", mode="before")
    @classmethod
    def _max_price(cls, value: Any) -> Any:
        return check_price(value, "max_price_per_gpu_hour")


class DatasetMount(StrictModel):
    name: str
    mount: str

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"mount must be an absolute path like /data/{value}")
        return value


class Checkpoint(StrictModel):
    #: Keep SUANLI_CHECKPOINT_DIR across attempts.
    keep: bool = True


class Output(StrictModel):
    """What the job writes to ``SUANLI_OUTPUT_DIR`` becomes dataset ``dataset`` when it succeeds:
    derived from the datasets it reads, at its site, with their highest level until re-graded."""

    dataset: str

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"'{value}' is not a valid dataset name: use 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value


class RetryPolicy(StrictModel):
    #: A failure with one of these exit codes is retried like a platform fault (within
    #: max_retries); any other failure by the job's own exit code ends the job.
    on_exit_codes: list[int] = Field(default_factory=list)


class After(StrictModel):
    """One dependency: start only once job ``job`` ended as ``when`` says (``core.dependencies``).
    Written as ``{job: ID, when: any}`` or as the string ``ID`` / ``ID:any``."""

    job: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    #: ok (it SUCCEEDED; the default), any (it ended), notok (it FAILED or was CANCELLED).
    when: When = When.OK

    @property
    def dependency(self) -> Dependency:
        return Dependency(self.job, self.when)


def _to_after(value: Any) -> Any:
    if isinstance(value, str):
        dep = parse_dependency(value)
        return {"job": dep.job, "when": dep.when.value}
    return value


AfterField = Annotated[After, BeforeValidator(_to_after)]


def _to_array(value: Any) -> Any:
    return value if isinstance(value, TaskArray) else parse_array(value)


#: ``0-999``, ``0-999:4``, ``1,3,5-7``, with ``%N`` (``core.arrays``); stored and shown as written.
ArrayField = Annotated[
    TaskArray,
    BeforeValidator(_to_array),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}], "examples": ["0-999%50"]}),
]


class JobSpec(StrictModel):
    name: str | None = None
    resources: Resources = Field(default_factory=Resources)
    placement: Placement = Field(default_factory=Placement)
    datasets: list[DatasetMount] = Field(default_factory=list)
    #: Local directory uploaded with the job (the CLI resolves it against the spec file).
    workdir: str | None = None
    envs: dict[str, str] = Field(default_factory=dict)
    #: Environment variables whose values are secret (tokens, passwords): they reach the job's
    #: environment but are stored encrypted, shown as SECRET_MASK and masked in its logs.
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    setup: str | None = None
    run: str
    #: Run setup and run in this container image (``docker.io/org/name:tag``, ``localhost/name:tag``,
    #: ``oci-archive:/path``, ``docker-archive:/path``); only sites that run containers and hold
    #: the image can take the job: sites never pull (``core.images``). None: no container.
    image: str | None = None
    #: What the job may reach over the network: ``none`` (loopback only, in a network namespace
    #: of its own), ``site`` (the site's own networks; see docs/job-spec.md for what a site
    #: enforces) or ``any`` (the default for now).
    network: Literal["none", "site", "any"] = "any"
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    #: False: never preempted for shorter work or for a tenant under its fair share (a ``low``
    #: job may still be preempted by a ``high`` one).
    preemptible: bool = True
    #: Register what the job writes to SUANLI_OUTPUT_DIR as a derived dataset when it succeeds.
    output: Output | None = None
    priority: Priority = Priority.NORMAL
    #: Retries after platform faults (lost node, preemption); not after the job's own failure.
    max_retries: int = Field(default=3, ge=0, le=100)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    #: Wall-clock limit in seconds ("2h" and "90m" are accepted), at most 365 days; the
    #: scheduler plans with it.
    time_limit: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    #: Free-form labels for filtering.
    labels: dict[str, str] = Field(default_factory=dict)
    #: Jobs this one waits for (Slurm's ``--dependency``): ``[abc123, {job: def456, when: any}]``.
    after: list[AfterField] = Field(default_factory=list, max_length=MAX_AFTER)
    #: One task per index (Slurm's ``--array``): ``0-999``, ``0-999:4``, ``1,3,5-7``, ``0-999%50``.
    array: ArrayField | None = None
    #: Run as a service: replicas that answer requests through the front desk (core.services).
    service: ServiceSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError(
                f"'{value}' is not a valid name: use 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("run")
    @classmethod
    def _run(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("run must be a command, e.g. 'python train.py'")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else parse_image(value).text

    @field_validator("run", "setup")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is None:
            return value
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_COMMAND_BYTES:
            raise ValueError(
                f"the command is {size / 1024:.0f} KiB; it may be at most "
                f"{MAX_COMMAND_BYTES // 1024} KiB (put a long script in the workdir and run it)"
            )
        if "\x00" in value:
            raise ValueError("the command has a NUL character, which no shell can run")
        return value

    @field_validator("envs", "labels", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if isinstance(v, bool):
                    out[k] = "true" if v else "false"
                elif isinstance(v, int | float):
                    out[k] = str(v)
                elif v is None:
                    out[k] = ""
                else:
                    out[k] = v
            return out
        return value

    @field_validator("envs")
    @classmethod
    def _envs(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_RE.match(key):
                raise ValueError(f"'{key}' is not a valid environment variable name")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"'{key}': names starting with {RESERVED_ENV_PREFIX} are set by suanli")
        if len(value) > MAX_ENVS:
            raise ValueError(f"at most {MAX_ENVS} environment variables, not {len(value)}")
        for key, text in value.items():
            if len(text.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES:
                raise ValueError(f"'{key}': a value may be at most {MAX_ENV_VALUE_BYTES // 1024} KiB")
            if "\x00" in text:
                raise ValueError(f"'{key}': the value has a NUL character, which no environment can hold")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels, not {len(value)}")
        for key, text in value.items():
            prefix, slash, name = key.rpartition("/")
            if not LABEL_NAME_RE.match(name) or (slash and not (len(prefix) <= 253 and LABEL_PREFIX_RE.match(prefix))):
                raise ValueError(
                    f"{_shown(key)} is not a valid label key: use 1-63 letters, digits, '.', '_' or '-', "
                    "starting and ending with a letter or digit, optionally after a DNS prefix and '/' "
                    "(e.g. team or example.com/team)"
                )
            if len(text) > MAX_LABEL_VALUE:
                raise ValueError(f"'{key}': a label's value may be at most {MAX_LABEL_VALUE} characters")
            if any(unicodedata.category(c) == "Cc" for c in text):
                raise ValueError(f"'{key}': a label's value may not hold control characters (tab, newline, NUL, ...)")
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_values(cls, value: Any) -> Any:
        if isinstance(value, dict):  # numbers as text, as in envs; never echo a value back
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in value.items()
            }
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        both = sorted(set(value) & set(info.data.get("envs") or {}))
        if both:
            raise ValueError(f"{', '.join(both)}: a name is in envs or in secrets, not in both")
        if len(value) > MAX_SECRETS:
            raise ValueError(f"at most {MAX_SECRETS} secrets, not {len(value)}")
        for key, secret in value.items():
            if not ENV_RE.match(key):
                raise ValueError(f"'{key}' is not a valid environment variable name")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"'{key}': names starting with {RESERVED_ENV_PREFIX} are set by suanli")
            if not secret:
                raise ValueError(f"'{key}': a secret's value must not be empty")
            if len(secret.encode("utf-8")) > MAX_SECRET_BYTES:
                raise ValueError(f"'{key}': a secret's value must be at most {MAX_SECRET_BYTES // 1024} KiB")
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: TaskArray | None, info: ValidationInfo) -> TaskArray | None:
        if value is not None and info.data.get("output") is not None:
            raise ValueError(
                "an array's tasks cannot all become one output dataset; drop output, or submit the "
                "tasks as separate jobs each with an output of its own"
            )
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: ServiceSpec | None, info: ValidationInfo) -> ServiceSpec | None:
        if value is None:
            return value
        if not info.data.get("name"):
            raise ValueError("a service needs a name: it is part of its address (/serve/TENANT/NAME/)")
        if info.data.get("array") is not None or info.data.get("output") is not None:
            raise ValueError("a service runs replicas until stopped: it takes no array and no output")
        resources = info.data.get("resources")
        if resources is not None and resources.num_nodes != 1:
            raise ValueError("each replica of a service runs on one node: set num_nodes: 1")
        if info.data.get("network") == "none":
            raise ValueError("a service is reached on its host's loopback: it cannot have network: none")
        return value

    @field_validator("time_limit", mode="before")
    @classmethod
    def _time_limit(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value, "time_limit")

    @property
    def display_name(self) -> str:
        return self.name or "job"


def parse_job_spec(text: str, source: str | None = None) -> JobSpec:
    """Parse a job spec from YAML. Raises SpecError naming every bad field and its line."""
    return parse_yaml_as(JobSpec, text, source)


def job_spec_from_data(data: Any, source: str | None = None) -> JobSpec:
    """Validate an already-parsed spec (e.g. JSON from the API)."""
    return validate_data(JobSpec, data, None, source)


AcceleratorList = list[AcceleratorField]
PriorityName = Literal["low", "normal", "high"]
