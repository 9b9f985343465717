# taskcodec: learned image compression for humans and machines.
#
#   prepare -> train_codec (one job per architecture x lambda) -> cache_latents (per split)
#           -> evaluate_codec / evaluate_classical (per dataset) -> report (per dataset)
#
# Run with:  snakemake --profile workflow/profiles/local
# Parameters: params.yaml (validated against workflow/schemas/params.schema.yaml before any job).

configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/codec.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        cache_outputs(),
        report_outputs(),


onstart:
    start_pipeline_run(config, sys.argv[1:])


onerror:
    end_pipeline_run("FAILED")


onsuccess:
    end_pipeline_run("FINISHED")
    for codec, dataset, reason in skipped_classical_codecs():
        print(f"taskcodec: skipped {codec} on {dataset}: {reason}")
    print(f"\ntaskcodec: results are in {Path(RESULTS).resolve()}/report/<dataset>/ (README.md, tables, plots)")
