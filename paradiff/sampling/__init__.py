"""The parallel sampler, its settings and schedules."""

from paradiff.sampling.config import SamplerConfig, SamplerConfigError
from paradiff.sampling.reference import ReferenceSampler
from paradiff.sampling.sampler import ParallelSampler, SampleOutput, StepPlan, make_plan

__all__ = [
    "ParallelSampler",
    "ReferenceSampler",
    "SampleOutput",
    "SamplerConfig",
    "SamplerConfigError",
    "StepPlan",
    "make_plan",
]
