"""Rule generate_microbeads. CLI: python generate_microbeads.py OUT_DIR [N_IMAGES SIZE SEED]"""

import sys

from hpstudy.logs import redirect_to
from hpstudy.microbeads import generate

if "snakemake" in globals():
    with redirect_to(snakemake.log[0]):  # noqa: F821
        p = snakemake.params  # noqa: F821
        generate(snakemake.output[0], p.n_images, p.image_size, p.seed)  # noqa: F821
else:
    out, *rest = sys.argv[1:]
    generate(out, *(int(v) for v in rest))
