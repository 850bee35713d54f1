# One pipeline for the four papers. Scale is configuration: config/{smoke,default,paper}.yaml.
#   snakemake --cores 16 all                                    # default tier
#   snakemake --cores 2 all --configfile config/smoke.yaml      # CI smoke tier
#   snakemake --workflow-profile profiles/slurm all --configfile config/paper.yaml
import sys

from snakemake.utils import validate

# The tier: config/default.yaml unless a tier file is given with --configfile. A tier file is complete on its
# own (no merging with default.yaml, whatever the working directory); --config KEY=VALUE overrides on top.
if "tier" not in config:
    import yaml
    from snakemake.utils import update_config

    _given = dict(config)
    config.clear()
    config.update(yaml.safe_load(open(workflow.source_path("config/default.yaml"))))
    update_config(config, _given)


validate(config, workflow.source_path("config/schema.yaml"))

from common.pipeline import check_config

check_config(config)  # the paper-independent keys; each paper's rules.smk checks its own section when it loads
TIER = config["tier"]
PY = sys.executable  # the interpreter snakemake runs in, whatever is first on PATH


# Each paper's rules.smk appends its report sections here: {title, tables: [md], figs: [png], note, budget}
REPORT_SECTIONS = []
# ... and the template variables of its claims.yaml (common/claims.py): the run names its plan gives this tier
CLAIM_VARS = {}


include: "common/teachers.smk"
include: "papers/knowledge_flow/rules.smk"
include: "papers/knowledge_flow/supervised.smk"
include: "papers/hpr_distillation/rules.smk"
include: "papers/gan_simulator/rules.smk"
include: "papers/cdrl/rules.smk"
include: "common/report.smk"


rule all:
    input:
        rules.report.output,
