# Stage 2b: the task model (a classifier on the original images; frozen in every later stage) and its
# intermediate feature maps of every prepared image.


rule train_task:
    input:
        prepared=results("prepared"),
    output:
        model=TASK_MODEL,
        metrics=results("task", "metrics.json"),
        train_log=results("task", "train_log.csv"),
    params:
        section=as_json({key: config["task"][key] for key in ("name", "model", "train")}),
    threads: job_threads("train_task")
    resources:
        **job_resources("train_task"),
    log:
        results("logs", "train_task.log"),
    benchmark:
        results("benchmarks", "train_task.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.train_task --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --manifest {input.prepared:q}/manifest.csv"
        " --out {output.model:q} > {log:q} 2>&1"


rule extract_features:
    input:
        prepared=results("prepared"),
        task_model=TASK_MODEL,
    output:
        directory(results("task", "features")),
    params:
        section=as_json(config["task"]["features"]),
    threads: job_threads("extract_features")
    resources:
        **job_resources("extract_features"),
    log:
        results("logs", "extract_features.log"),
    benchmark:
        results("benchmarks", "extract_features.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.extract_features --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --task-model {input.task_model:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
