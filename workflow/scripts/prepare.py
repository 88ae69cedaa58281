"""Rule prepare. CLI: python prepare.py STUDY_YAML LOCATION OUT.pt OUT_manifest.json"""

import sys

from hpstudy.datasets import DatasetError
from hpstudy.logs import redirect_to
from hpstudy.prepare import prepare


def main(spec, location, out, manifest):
    try:
        result = prepare(spec, location, out, manifest)
    except DatasetError as err:
        print(f"hpstudy: dataset error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"prepared {result['n_samples']} samples {result['split_sizes']} from {location}",
        file=sys.stderr,
    )


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(dict(sm.params.spec), sm.params.location, sm.output.prepared, sm.output.manifest)
else:
    from hpstudy.study import load_study

    study_file, location, out, manifest = sys.argv[1:5]
    main(load_study(study_file).dataset, location, out, manifest)
