# One pipeline for the four papers. Scale is configuration: config/{smoke,default,paper}.yaml.
#   snakemake --cores 16 all                                    # default tier
#   snakemake --cores 2 all --configfile config/smoke.yaml      # CI smoke tier
#   snakemake --workflow-profile profiles/slurm all --configfile config/paper.yaml
import sys

from snakemake.utils import validate

configfile: "config/default.yaml"


validate(config, workflow.source_path("config/schema.yaml"))

from common.pipeline import check_config

check_config(config)
TIER = config["tier"]
PY = sys.executable  # the interpreter snakemake runs in, whatever is first on PATH


include: "common/teachers.smk"
include: "papers/knowledge_flow/rules.smk"
include: "common/report.smk"


rule all:
    input:
        rules.report.output,
