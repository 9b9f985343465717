# Stage 5a: joint task fine-tuning (seed 000): each selected pretrained codec trained further with
# L = R + tau * lambda * D + w * L_task through the frozen task model; tau is a sweep wildcard.
# The fine-tuned codecs are entropy-coded and evaluated on the test split like the pretrained ones.


rule finetune_codec:
    input:
        unpack(lambda wc: saliency_input(config["finetune"]["train"]["saliency_floor"])),
        prepared=RESULTS + "/prepared",
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
        task_model=TASK_MODEL,
    output:
        model=RESULTS + "/finetuned/" + TUNED + "/model.pt",
        metrics=RESULTS + "/finetuned/" + TUNED + "/metrics.json",
        train_log=RESULTS + "/finetuned/" + TUNED + "/train_log.csv",
    params:
        section=as_json(config["finetune"]["train"]),
        saliency=saliency_args(config["finetune"]["train"]["saliency_floor"]),
    threads: config["finetune"]["train"]["threads"]
    log:
        RESULTS + "/logs/finetune_codec/" + TUNED + ".log",
    benchmark:
        RESULTS + "/benchmarks/finetune_codec/" + TUNED + ".tsv"
    shell:
        "python -m taskcodec.stages.finetune_codec --params {params.section:q} --threads {threads}"
        " --model {input.model:q} --task-model {input.task_model:q} --tau {wildcards.tau}"
        " --manifest {input.prepared:q}/manifest.csv {params.saliency} --out {output.model:q} > {log:q} 2>&1"


use rule cache_latents as cache_finetuned with:
    input:
        unpack(dataset_inputs),
        model=RESULTS + "/finetuned/" + TUNED + "/model.pt",
    output:
        directory(RESULTS + "/cache/finetuned/" + TUNED + "/{dataset}"),
    log:
        RESULTS + "/logs/cache_finetuned/" + TUNED + "/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/cache_finetuned/" + TUNED + "/{dataset}.tsv"


use rule evaluate_codec as evaluate_finetuned with:
    input:
        unpack(task_measure_inputs),
        model=RESULTS + "/finetuned/" + TUNED + "/model.pt",
        cache=RESULTS + "/cache/finetuned/" + TUNED + "/{dataset}",
    output:
        directory(RESULTS + "/eval/finetuned/" + TUNED + "/{dataset}"),
    params:
        section=as_json({key: config["evaluate"][key] for key in ("device", "save_reconstructions", "saliency_threshold")}),
        codec_id=lambda wc: f"{wc.arch}/N{wc.N}-M{wc.M} task tau{wc.tau}",
        task=task_measure_args,
    log:
        RESULTS + "/logs/evaluate_finetuned/" + TUNED + "/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate_finetuned/" + TUNED + "/{dataset}.tsv"
