"""Task specifications: pydantic models loaded from ``envs/*.yaml``.

Lengths in the YAML are in millimetres where the field name says ``_mm`` (people write
them), angles in degrees where it says ``_deg``; the tasks convert to SI on use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

Vec3 = tuple[float, float, float]
Range = tuple[float, float]
Difficulty = Literal["easy", "medium", "hard"]


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file, the field and the value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RewardWeights(_Model):
    """Weight of each named reward term (all >= 0; costs are subtracted)."""

    progress: float = Field(10.0, ge=0)
    time: float = Field(0.01, ge=0)
    proximity: float = Field(0.2, ge=0)
    damage: float = Field(0.0, ge=0)
    success: float = Field(10.0, ge=0)
    failure: float = Field(10.0, ge=0)


class CameraSpec(_Model):
    eye: Vec3
    target: Vec3
    up: Vec3 = (0.0, 0.0, 1.0)
    fov_deg: float = Field(60.0, gt=0, lt=180)
    near: float = Field(0.005, gt=0)
    far: float = Field(0.5, gt=0)


class VolumeSpec(_Model):
    """The pre-operative volume: a cube of ``resolution``^3 voxels, ``extent_mm`` on a side,
    centred at ``centre`` (m, world frame) over the operative region."""

    resolution: int = Field(32, ge=4, le=256)
    extent_mm: float = Field(gt=0)
    centre: Vec3


class PatientSpec(_Model):
    seed: int = Field(ge=0)
    difficulty: Difficulty = "medium"


class NeedleReachParams(_Model):
    workspace_low: Vec3
    workspace_high: Vec3
    start: Vec3
    target_half_range_mm: Vec3
    max_step_mm: float = Field(gt=0)


class SurgicalPathParams(_Model):
    port: Vec3 = (0.0, 0.0, 0.0)
    wall_thickness_mm: float = Field(12.0, gt=0)
    angle_limit_deg: float = Field(40.0, gt=0, lt=80)
    max_angle_step_deg: float = Field(gt=0)
    max_insertion_step_mm: float = Field(gt=0)
    insertion_range_mm: Range
    start_insertion_mm: float = Field(gt=0)
    min_start_misalignment_deg: float = Field(ge=0)
    target_depth_mm: Range
    target_lateral_mm: float = Field(ge=0)
    lesion_radius_mm: float = Field(gt=0)
    organ_radii_mm: Vec3
    organ_gap_mm: float = Field(gt=0, description="organ top below the start tip, at least")
    vessels: dict[Difficulty, int]
    vessel_radius_mm: Range
    vessel_offset_mm: Range
    vessel_bend_mm: float = Field(ge=0)
    nerves: int = Field(ge=0)
    nerve_radius_mm: float = Field(gt=0)
    required_clearance_mm: float = Field(gt=0)
    overshoot_mm: float = Field(gt=0)

    @model_validator(mode="after")
    def _ranges(self) -> "SurgicalPathParams":
        for name in ("insertion_range_mm", "target_depth_mm", "vessel_radius_mm", "vessel_offset_mm"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high, got {[low, high]}")
        return self


class IncisionParams(_Model):
    tissue_size_mm: tuple[float, float]
    tissue_thickness_mm: float = Field(gt=0)
    critical_depth_mm: Range
    depth_band_mm: Range
    incision_length_mm: Range
    curvature_mm: float = Field(ge=0)
    max_step_mm: float = Field(gt=0)
    max_depth_step_mm: float = Field(gt=0)
    start_height_mm: Range
    lateral_tolerance_mm: float = Field(gt=0)
    max_deviation_mm: float = Field(gt=0)
    coverage_required: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _band_above_structure(self) -> "IncisionParams":
        if not 0 < self.depth_band_mm[0] < self.depth_band_mm[1] < self.critical_depth_mm[0]:
            raise ValueError(
                "depth_band_mm must lie above critical_depth_mm: need 0 < band low < band high < "
                f"critical low, got band {list(self.depth_band_mm)}, critical {list(self.critical_depth_mm)}"
            )
        return self


class _SpecBase(_Model):
    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    description: str
    max_episode_steps: int = Field(gt=0)
    tolerance_mm: float = Field(gt=0)
    safety_margin_mm: float = Field(0.0, ge=0)
    progress_scale_mm: float = Field(100.0, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    difficulty_scale: dict[Difficulty, float] = {"easy": 0.5, "medium": 1.0, "hard": 1.5}
    reward: RewardWeights = RewardWeights()
    camera: CameraSpec
    image_size: int = Field(84, ge=16, le=512)
    render_size: int = Field(256, ge=16, le=2048)
    patients: dict[str, PatientSpec] = {}
    volume: VolumeSpec | None = None
    #: the env's reference path when ``reference`` is not given (see :class:`surgsim.env.SurgSimEnv`)
    reference: Literal["straight", "planner"] = "straight"


class NeedleReachSpec(_SpecBase):
    task: Literal["needle_reach"]
    params: NeedleReachParams


class SurgicalPathSpec(_SpecBase):
    task: Literal["surgical_path"]
    params: SurgicalPathParams


class IncisionSpec(_SpecBase):
    task: Literal["incision"]
    params: IncisionParams


TaskSpec = Annotated[
    Union[NeedleReachSpec, SurgicalPathSpec, IncisionSpec], Field(discriminator="task")
]
_ADAPTER: TypeAdapter = TypeAdapter(TaskSpec)
_TASKS = ("needle_reach", "surgical_path", "incision")


def parse_spec(data: object, source: str = "<spec>") -> TaskSpec:
    """Validate a spec mapping; errors name ``source``, the field path and the bad value."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            value = err.get("input")
            if err["type"].startswith("union_tag"):  # missing or unknown `task`
                loc, value = ["task"], data.get("task") if isinstance(data, dict) else None
            elif loc and loc[0] in _TASKS:  # drop the discriminator's branch name
                loc = loc[1:]
            field = ".".join(str(part) for part in loc) or "<top level>"
            problems.append(f"field '{field}' = {value!r}: {err['msg']}")
        raise SpecError(f"{source}: invalid spec: " + "; ".join(problems)) from None


def load_spec(path: str | Path) -> TaskSpec:
    """Load and validate one YAML spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping, got {type(data).__name__}")
    return parse_spec(data, str(path))
