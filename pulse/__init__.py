"""pulse: face super-resolution by latent-space exploration (PULSE, Menon et al., CVPR 2020).

It invents a plausible face that downscales to the input; it never recovers the true face. Do not use
its output to identify anyone.
"""

from .api import Result, Upsampler, upsample
from .errors import PulseError
from .models.generator_file import load_generator
from .models.stylegan1 import Generator, GeneratorConfig
from .weights.resolve import open_generator

__all__ = ["upsample", "Upsampler", "Result", "open_generator", "load_generator", "Generator", "GeneratorConfig", "PulseError"]
