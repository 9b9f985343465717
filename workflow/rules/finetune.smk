# Stage 5a: joint task fine-tuning (seed 000): each selected pretrained codec trained further with
# L = R + tau * lambda * D + w * L_task through the frozen model of each task of finetune.tasks; the task and tau
# are wildcards.
# The fine-tuned codecs are entropy-coded and evaluated on the test split like the pretrained ones (job group
# "coding", see cache.smk).
# resources.finetune_codec.tasks > 1 runs the stage under torchrun, as train_codec.


rule finetune_codec:
    input:
        unpack(lambda wc: saliency_input(config["finetune"]["train"]["saliency_floor"])),
        prepared=results("prepared"),
        model=results("codecs", CODEC, "model.pt"),
        task_model=lambda wc: task_model(wc.task),
    output:
        model=results("finetuned", TUNED, "model.pt"),
        metrics=results("finetuned", TUNED, "metrics.json"),
        train_log=results("finetuned", TUNED, "train_log.csv"),
    params:
        section=as_json(config["finetune"]["train"]),
        saliency=saliency_args(config["finetune"]["train"]["saliency_floor"]),
    threads: job_threads("finetune_codec")
    resources:
        **job_resources("finetune_codec"),
    log:
        results("logs", "finetune_codec", f"{TUNED}.log"),
    benchmark:
        results("benchmarks", "finetune_codec", f"{TUNED}.tsv")
    conda:
        CONDA_ENV
    shell:
        "{resources.launcher} taskcodec.stages.finetune_codec --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --model {input.model:q}"
        " --task-model {input.task_model:q} --tau {wildcards.tau}"
        " --manifest {input.prepared:q}/manifest.csv {params.saliency} --out {output.model:q} > {log:q} 2>&1"


use rule cache_latents as cache_finetuned with:
    input:
        unpack(dataset_inputs),
        model=results("finetuned", TUNED, "model.pt"),
    output:
        directory(results("cache", "finetuned", TUNED, "{dataset}")),
    params:
        section=as_json({key: value for key, value in config["cache"].items() if key != "splits"}),
        source=dataset_args,
        latents=lambda wc: "" if wc.dataset in SPLITS else "--no-latents",
        rule="cache_finetuned",
    log:
        results("logs", "cache_finetuned", TUNED, "{dataset}.log"),
    benchmark:
        results("benchmarks", "cache_finetuned", TUNED, "{dataset}.tsv")


use rule evaluate_codec as evaluate_finetuned with:
    input:
        unpack(task_measure_inputs),
        model=results("finetuned", TUNED, "model.pt"),
        cache=results("cache", "finetuned", TUNED, "{dataset}"),
    output:
        directory(results("eval", "finetuned", TUNED, "{dataset}")),
    params:
        section=evaluate_section(),
        codec_id=lambda wc: f"{wc.arch}/{wc.hyper} task tau{wc.tau}",
        point="",
        task=task_measure_args,
        rule="evaluate_finetuned",
    log:
        results("logs", "evaluate_finetuned", TUNED, "{dataset}.log"),
    benchmark:
        results("benchmarks", "evaluate_finetuned", TUNED, "{dataset}.tsv")
