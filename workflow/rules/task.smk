# Stage 2b: one model per task of `tasks` (e.g. a classifier, a detector; trained on the original images, frozen in
# every later stage) and its intermediate feature maps of every prepared image.


rule train_task:
    input:
        prepared=results("prepared"),
    output:
        model=task_model("{task}"),
        metrics=results("task", "{task}", "metrics.json"),
        train_log=results("task", "{task}", "train_log.csv"),
    params:
        section=lambda wc: as_json({key: config["tasks"][wc.task][key] for key in ("model", "train")}),
    threads: job_threads("train_task")
    resources:
        **job_resources("train_task"),
    log:
        results("logs", "train_task", "{task}.log"),
    benchmark:
        results("benchmarks", "train_task", "{task}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.train_task --task {wildcards.task} --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --manifest {input.prepared:q}/manifest.csv"
        " --out {output.model:q} > {log:q} 2>&1"


rule extract_features:
    input:
        prepared=results("prepared"),
        task_model=task_model("{task}"),
    output:
        directory(task_features("{task}")),
    params:
        section=lambda wc: as_json(config["tasks"][wc.task]["features"]),
    threads: job_threads("extract_features")
    resources:
        **job_resources("extract_features"),
    log:
        results("logs", "extract_features", "{task}.log"),
    benchmark:
        results("benchmarks", "extract_features", "{task}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.extract_features --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --task-model {input.task_model:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
