# taskcodec: learned image compression for humans and machines.
#
#   prepare -> saliency, train_task -> extract_features (per task of `tasks`)
#           -> train_codec (one job per architecture and hyperparameters x lambda) -> cache_latents (per split)
#           -> train_scalable (seed 002: per hyperparameters x lambda x lambda_task, around the model of scalable.task)
#              -> cache_scalable / evaluate_scalable (the image from both layers, the task from the base layer)
#           -> train_variable_rate (seed 001: per model, one for all lambdas; the pyramid on train_simclr's
#              self-supervised features) -> cache_variable_rate / evaluate_variable_rate (per operating point)
#           -> finetune_codec (per task x codec x tau, through the models of finetune.tasks) -> cache/evaluate_finetuned
#           -> train_latent_classifier / train_joint_classifier (per codec, on y_hat and sigma_hat)
#           -> evaluate_codec / evaluate_classical (per dataset; every task's accuracy and feature distortion on
#              the test split) -> report (per dataset), report_task (per task)
#           -> summarize (DVC metrics and plots)
#
# Run with:  snakemake --profile workflow/profiles/local
# Parameters: params.yaml (validated against workflow/schemas/params.schema.yaml before any job). Its `resources`
# section (device, threads, memory, time, GPUs per stage) reaches the rules as threads and resources, never as
# params: changing it reruns nothing. Every rule names its software (conda: environment.yml).

# params.yaml, unless a study names its own complete params file (--configfile bench/<study>/params.yaml): then
# that file alone, so that no key of params.yaml the study's file leaves out (e.g. another task model's) leaks in.
if not workflow.config_settings.configfiles:

    configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/task.smk"
include: "workflow/rules/simclr.smk"
include: "workflow/rules/codec.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/scalable.smk"
include: "workflow/rules/variable_rate.smk"
include: "workflow/rules/latent.smk"
include: "workflow/rules/report.smk"


# Cheap rules run where Snakemake runs, never submitted to a cluster.
localrules:
    all,
    versioned,
    report,
    report_task,
    summarize,


rule all:
    input:
        cache_outputs(),
        report_outputs(),
        results("summary", "metrics.json"),


# DVC-versioned artifacts only: `snakemake --touch versioned` marks them up to date after a DVC restore.
rule versioned:
    input:
        lambda wildcards: versioned_outputs(),


onstart:
    run_lock.hold(RESULTS)
    start_pipeline_run(config, sys.argv[1:])


onerror:
    end_pipeline_run("FAILED")


onsuccess:
    end_pipeline_run("FINISHED")
    record_in_dvc()
    for codec, dataset, reason in skipped_classical_codecs():
        print(f"taskcodec: skipped {codec} on {dataset}: {reason}")
    if MACHINE and LATENT_SKIP_REASON:
        print(f"taskcodec: skipped the compressed-domain classifiers: {LATENT_SKIP_REASON}")
    print(f"\ntaskcodec: results are in {Path(RESULTS).resolve()}/report/<dataset>/ (README.md, tables, plots)")
