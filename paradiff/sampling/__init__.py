"""The parallel sampler, its settings and schedules."""

from paradiff.sampling.config import SamplerConfig, SamplerConfigError
from paradiff.sampling.plan import SamplerProfile, StepPlan
from paradiff.sampling.sampler import ParallelSampler, SampleOutput, make_plan, sampler_for

__all__ = [
    "ParallelSampler",
    "SampleOutput",
    "SamplerConfig",
    "SamplerConfigError",
    "SamplerProfile",
    "StepPlan",
    "make_plan",
    "sampler_for",
]
