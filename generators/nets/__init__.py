"""Networks of the generator families, one per file, 2D or 3D from ``spatial_dims``.

Constructors take only shapes and widths; families decide training and sampling.
"""

from synthcohort.generators.nets.dcgan_generator import ConditionalDCGANGenerator
from synthcohort.generators.nets.denoiser_unet import DenoiserUNet
from synthcohort.generators.nets.projection_critic import ProjectionCritic

__all__ = ["ConditionalDCGANGenerator", "DenoiserUNet", "ProjectionCritic"]
