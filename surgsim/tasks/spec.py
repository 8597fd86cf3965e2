"""Task specifications: pydantic models loaded from ``envs/*.yaml``.

Lengths in the YAML are in millimetres where the field name says ``_mm`` (people write
them), angles in degrees where it says ``_deg``; the tasks convert to SI on use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union, get_args

import yaml
from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator,
)
from pydantic_core import PydanticCustomError

from surgsim.errors import SurgsimError, yaml_problem

Vec3 = tuple[float, float, float]
Difficulty = Literal["easy", "medium", "hard"]
DIFFICULTIES: tuple[str, ...] = get_args(Difficulty)


def _range(positive: bool, at_most_one: bool = False):
    """A check that a [low, high] range is increasing and not empty (a zero-width range has
    nothing to draw from; an inverted one draws outside the bounds the user wrote); a range of
    fractions (``at_most_one``) must also end at 1 or below."""

    def check(value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (low < high and (low > 0 if positive else low >= 0) and (high <= 1 or not at_most_one)):
            raise ValueError(f"must be [low, high] with {'0 <' if positive else '0 <='} low < high"
                             + (" <= 1" if at_most_one else ""))
        return value

    return AfterValidator(check)


#: [low, high] of a non-negative quantity (a depth, an offset)
Range = Annotated[tuple[float, float], _range(positive=False)]
#: [low, high] of a quantity that must not be zero (a radius, a length)
PositiveRange = Annotated[tuple[float, float], _range(positive=True)]
#: [low, high] of a fraction: 0 < low < high <= 1
FractionRange = Annotated[tuple[float, float], _range(positive=True, at_most_one=True)]
PositiveVec3 = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
NonNegativeVec3 = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]


def _every_difficulty(value: dict) -> dict:
    """Every env can be made at every difficulty, so a per-difficulty map must name them all."""
    missing = [d for d in DIFFICULTIES if d not in value]
    if missing:
        raise ValueError(f"missing difficulty {', '.join(map(repr, missing))}; need {list(DIFFICULTIES)}")
    return value


def _refuse(field: str, value: object, why: str) -> PydanticCustomError:
    """An error about ``field`` (a dotted path below the model that raises it) for a check
    that needs several fields; :func:`parse_spec` reports it at that field."""
    return PydanticCustomError("spec_field", why, {"field": field, "value": value})


class SpecError(SurgsimError):
    """A spec file that cannot be used; the message names the file, the field and the value."""


class _Model(BaseModel):
    # NaN and infinity in a spec only ever come from a typo (.nan, .inf) and poison every draw
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RewardWeights(_Model):
    """Weight of each named reward term (all >= 0; costs are subtracted)."""

    progress: float = Field(10.0, ge=0)
    time: float = Field(0.01, ge=0)
    proximity: float = Field(0.2, ge=0)
    damage: float = Field(0.0, ge=0)
    success: float = Field(10.0, ge=0)
    failure: float = Field(10.0, ge=0)
    #: per step, times the tool force above ``tissue.safe_force_n`` in units of that force
    #: (elastic tissue only)
    force: float = Field(1.0, ge=0)


class CameraSpec(_Model):
    eye: Vec3
    target: Vec3
    up: Vec3 = (0.0, 0.0, 1.0)
    fov_deg: float = Field(60.0, gt=0, lt=180)
    near: float = Field(0.005, gt=0)
    far: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _frustum(self) -> "CameraSpec":
        if self.far <= self.near:
            raise _refuse("far", self.far, f"far must be beyond near ({self.near})")
        if self.eye == self.target:
            raise _refuse("target", list(self.target), "the camera target must differ from its eye")
        return self


class VolumeSpec(_Model):
    """The pre-operative volume: a cube of ``resolution``^3 voxels, ``extent_mm`` on a side,
    centred at ``centre`` (m, world frame) over the operative region."""

    resolution: int = Field(32, ge=4, le=256)
    extent_mm: float = Field(gt=0)
    centre: Vec3


class TissueSpec(_Model):
    """The tissue model (``model``) and its mechanical parameters (see :mod:`surgsim.sim.tissue`).

    The defaults describe liver with a laparoscopic shaft. Each value is the order of magnitude the
    named source reports, chosen inside the range it gives; values with no published counterpart
    are model parameters and say so.
    """

    #: ``rigid``: geometry only (no force, nothing moves); ``elastic``: the reduced-order model;
    #: ``fem``: PyBullet's finite-element soft bodies (:mod:`surgsim.sim.fem_contact`)
    model: Literal["rigid", "elastic", "fem"] = "elastic"
    # healthy human liver, transient elastography: about 5.5 kPa (Sandrin et al. 2003, Ultrasound
    # Med Biol 29(12))
    young_modulus_kpa: float = Field(5.5, gt=0)
    # soft tissue is nearly incompressible: 0.45-0.49 is the usual modelling range (Fung 1993,
    # Biomechanics: mechanical properties of living tissues)
    poisson_ratio: float = Field(0.49, gt=0, lt=0.5)
    # capsule stiffness force k1 d + k2 d^2 before puncture and the puncture force: bovine liver,
    # forces of 1-2 N at puncture after about 10 mm of indentation (Okamura, Simone and O'Leary
    # 2004, IEEE TBME 51(10))
    stiffness_n_per_mm: float = Field(0.05, ge=0)
    stiffness_n_per_mm2: float = Field(0.01, ge=0)
    puncture_force_n: float = Field(1.5, gt=0)
    # friction along the shaft and cutting at the tip after puncture: tenths of a newton over
    # tens of millimetres in the same study (friction by a Karnopp model, cutting constant)
    friction_n_per_mm: float = Field(0.01, ge=0)
    cutting_force_n: float = Field(0.3, ge=0)
    # model parameter (no published value): the tissue's grip slips within a millimetre
    drag_stiffness_n_per_mm: float = Field(0.5, gt=0)
    # virtual springs per length of inserted shaft (the needle-steering model of Glozman and
    # Shoham 2007, IEEE T-RO 23(3)); the yield offset is a model parameter (the tissue tears)
    lateral_stiffness_n_per_mm2: float = Field(0.005, ge=0)
    lateral_yield_mm: float = Field(2.0, gt=0)
    # a blade: cutting force per mm of depth, growing with speed (scalpel cuts of skin need newtons
    # at millimetres of depth: McCarthy, Hussey and Gilchrist 2007, Eng Fract Mech 74(14))
    blade_force_n_per_mm: float = Field(0.3, ge=0)
    blade_speed_factor_s_per_m: float = Field(10.0, ge=0)
    # vessel wall contact; rupture above about a newton (needle puncture of vessel walls is of that
    # order: Okamura, Simone and O'Leary 2004 report about 1 N puncture peaks for interior
    # structures); the stiffness is a model parameter
    critical_stiffness_n_per_mm: float = Field(0.5, gt=0)
    rupture_force_n: float = Field(1.0, gt=0)
    # model parameter: the tool's load is spread over about a shaft diameter
    load_radius_mm: float = Field(5.0, gt=0)
    # force the `force` reward term starts to penalise, and the force that fails the episode
    # (`excessive_force`); 2 N is the scorer's default excessive-force threshold
    safe_force_n: float = Field(2.0, gt=0)
    max_force_n: float = Field(5.0, gt=0)
    # fem only. Mesh resolution: the edge of the grid cells the tissue part is meshed with (6
    # tetrahedra each); finer is more faithful and slower (the sub-steps grow as 1 / cell and
    # the work per sub-step with the number of cells): 14 mm keeps the organ real time on 2 cores
    fem_cell_mm: float = Field(14.0, gt=0)
    # fem only. Linear tetrahedra lock near incompressibility (at 0.49 the FEM slab was 2.3x
    # stiffer than at 0.45 where the analytic answer changes 5 %, benchmarks/tissue_compare.py)
    # and the stable sub-step shrinks: the low end of the 0.45-0.49 range (Fung 1993)
    fem_poisson_ratio: float = Field(0.45, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _thresholds(self) -> "TissueSpec":
        if self.max_force_n <= self.safe_force_n:
            raise _refuse("max_force_n", self.max_force_n, f"must exceed safe_force_n ({self.safe_force_n})")
        return self


class PatientSpec(_Model):
    seed: int = Field(ge=0)
    difficulty: Difficulty = "medium"


class NeedleReachParams(_Model):
    workspace_low: Vec3
    workspace_high: Vec3
    start: Vec3
    target_half_range_mm: NonNegativeVec3
    max_step_mm: float = Field(gt=0)
    target_min_distance_tolerances: float = Field(
        2.0, ge=0, description="a drawn target lies farther than this many tolerance_mm from the start")

    @model_validator(mode="after")
    def _workspace(self) -> "NeedleReachParams":
        low, high = self.workspace_low, self.workspace_high
        if not all(lo < hi for lo, hi in zip(low, high)):
            raise _refuse("workspace_high", list(high), f"must exceed workspace_low {list(low)} on every axis")
        if not all(lo <= s <= hi for lo, s, hi in zip(low, self.start, high)):
            raise _refuse("start", list(self.start), "must lie inside the workspace")
        return self

    def workspace_size_mm(self) -> float:
        return 1e3 * min(hi - lo for lo, hi in zip(self.workspace_low, self.workspace_high))


class SurgicalPathParams(_Model):
    port: Vec3 = (0.0, 0.0, 0.0)
    wall_thickness_mm: float = Field(12.0, gt=0)
    angle_limit_deg: float = Field(40.0, gt=0, lt=80)
    max_angle_step_deg: float = Field(gt=0)
    max_insertion_step_mm: float = Field(gt=0)
    insertion_range_mm: Range
    start_insertion_mm: float = Field(gt=0)
    min_start_misalignment_deg: float = Field(ge=0)
    target_depth_mm: PositiveRange
    target_lateral_mm: float = Field(ge=0)
    lesion_radius_mm: float = Field(gt=0)
    organ_radii_mm: PositiveVec3
    organ_gap_mm: float = Field(gt=0, description="organ top below the start tip, at least")
    vessels: Annotated[dict[Difficulty, Annotated[int, Field(ge=0)]], AfterValidator(_every_difficulty)]
    vessel_radius_mm: PositiveRange
    vessel_offset_mm: Range
    vessel_bend_mm: float = Field(ge=0)
    nerves: int = Field(ge=0)
    nerve_radius_mm: float = Field(gt=0)
    required_clearance_mm: float = Field(gt=0)
    overshoot_mm: float = Field(gt=0)
    # scenario sampling (fractions are of the quantity named; "x difficulty" scales with difficulty_scale)
    lesion_angle_limit_frac: float = Field(
        0.9, gt=0, le=1, description="the lesion's aim yaw and pitch stay within this fraction of angle_limit_deg")
    start_angle_limit_frac: float = Field(
        0.8, gt=0, le=1, description="start yaw and pitch are drawn within this fraction of angle_limit_deg")
    organ_radius_jitter_frac: float = Field(
        0.15, ge=0, lt=1, description="each organ radius is organ_radii_mm times 1 +- this (x difficulty)")
    organ_centre_offset_frac: float = Field(
        0.3, ge=0, description="organ centre off the lesion, per axis, up to this fraction of that radius (x difficulty)")
    lesion_inside_organ_frac: float = Field(
        0.6, gt=0, le=1, description="the lesion lies within this fraction of the organ's size from its centre")
    vessel_crossing_frac: FractionRange = Field(
        (0.55, 0.95), description="a vessel or nerve passes the port-to-lesion line this far along it")
    vessel_length_mm: float = Field(90.0, gt=0, description="length of each vessel and nerve")
    wall_half_size_mm: float = Field(150.0, gt=0, description="half the side of the body wall drawn under the port")

    def workspace_size_mm(self) -> float:
        low, high = self.insertion_range_mm
        return high - low


class IncisionParams(_Model):
    tissue_size_mm: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
    tissue_thickness_mm: float = Field(gt=0)
    critical_depth_mm: PositiveRange
    depth_band_mm: PositiveRange
    incision_length_mm: PositiveRange
    curvature_mm: float = Field(ge=0)
    max_step_mm: float = Field(gt=0)
    max_depth_step_mm: float = Field(gt=0)
    start_height_mm: Range
    lateral_tolerance_mm: float = Field(gt=0)
    max_deviation_mm: float = Field(gt=0)
    coverage_required: float = Field(gt=0, le=1)
    # scenario sampling ("x difficulty" scales with difficulty_scale)
    line_centre_offset_mm: float = Field(
        10.0, ge=0, description="the line's middle is drawn within +- this of the tissue centre on x and y (x difficulty)")
    start_offset_mm: float = Field(
        2.0, ge=0, description="the blade starts within +- this of the line's start on x and y (x difficulty)")

    @model_validator(mode="after")
    def _band_above_structure(self) -> "IncisionParams":
        if not 0 < self.depth_band_mm[0] < self.depth_band_mm[1] < self.critical_depth_mm[0]:
            raise ValueError(
                "depth_band_mm must lie above critical_depth_mm: need 0 < band low < band high < "
                f"critical low, got band {list(self.depth_band_mm)}, critical {list(self.critical_depth_mm)}"
            )
        if self.incision_length_mm[1] >= min(self.tissue_size_mm):
            raise _refuse("incision_length_mm", list(self.incision_length_mm),
                          f"the longest incision must fit on the tissue ({list(self.tissue_size_mm)} mm)")
        return self

    def workspace_size_mm(self) -> float:
        return min(self.tissue_size_mm)


class _SpecBase(_Model):
    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    description: str
    max_episode_steps: int = Field(gt=0)
    tolerance_mm: float = Field(gt=0)
    safety_margin_mm: float = Field(0.0, ge=0)
    progress_scale_mm: float = Field(100.0, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    difficulty_scale: Annotated[
        dict[Difficulty, Annotated[float, Field(gt=0)]], AfterValidator(_every_difficulty)
    ] = {"easy": 0.5, "medium": 1.0, "hard": 1.5}
    reward: RewardWeights = RewardWeights()
    tissue: TissueSpec = TissueSpec()
    camera: CameraSpec
    image_size: int = Field(84, ge=16, le=512)
    render_size: int = Field(256, ge=16, le=2048)
    patients: dict[str, PatientSpec] = {}
    volume: VolumeSpec | None = None
    #: the env's reference path when ``reference`` is not given (see :class:`surgsim.env.SurgSimEnv`)
    reference: Literal["straight", "planner"] = "straight"
    #: where the spec came from (a file path, or ``<spec>``), for error messages
    _source: str = PrivateAttr("<spec>")

    @property
    def source(self) -> str:
        return self._source

    @model_validator(mode="after")
    def _tolerance_fits(self) -> "_SpecBase":
        """A success tolerance as wide as the workspace makes every episode a success (or, on
        NeedleReach, leaves no room for a target)."""
        size = self.params.workspace_size_mm()
        if 2 * self.tolerance_mm >= size:
            raise _refuse("tolerance_mm", self.tolerance_mm,
                          f"twice the tolerance must be smaller than the workspace ({size:g} mm across)")
        return self


class NeedleReachSpec(_SpecBase):
    task: Literal["needle_reach"]
    params: NeedleReachParams


class SurgicalPathSpec(_SpecBase):
    task: Literal["surgical_path"]
    params: SurgicalPathParams

    @model_validator(mode="after")
    def _organ_radii_positive(self) -> "SurgicalPathSpec":
        """The hardest difficulty scales the radius jitter: it must leave every radius positive."""
        hardest = max(self.difficulty_scale.values())
        jitter = self.params.organ_radius_jitter_frac
        if jitter * hardest >= 1:
            raise _refuse("params.organ_radius_jitter_frac", jitter,
                          f"times the largest difficulty_scale ({hardest:g}) must stay below 1 "
                          "(an organ radius would reach zero)")
        return self


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
        spec = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            value = err.get("input")
            if err["type"].startswith("union_tag"):  # missing or unknown `task`
                loc, value = ["task"], data.get("task") if isinstance(data, dict) else None
            else:
                if loc and loc[0] in _TASKS:  # drop the discriminator's branch name
                    loc = loc[1:]
                if err["type"] == "spec_field":  # a check across fields names the one at fault
                    loc, value = loc + err["ctx"]["field"].split("."), err["ctx"]["value"]
            field = ".".join(str(part) for part in loc) or "<top level>"
            problems.append(f"field '{field}' = {value!r}: {err['msg']}")
        raise SpecError(f"{source}: invalid spec: " + "; ".join(problems)) from None
    spec._source = source
    return spec


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
        raise SpecError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping, got {type(data).__name__}")
    return parse_spec(data, str(path))
