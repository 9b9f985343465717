# Stage 2b: the task model (a classifier on the original images; frozen in every later stage) and its
# intermediate feature maps of every prepared image.


rule train_task:
    input:
        prepared=RESULTS + "/prepared",
    output:
        model=TASK_MODEL,
        metrics=RESULTS + "/task/metrics.json",
        train_log=RESULTS + "/task/train_log.csv",
    params:
        section=as_json({key: config["task"][key] for key in ("model", "train")}),
    threads: config["task"]["train"]["threads"]
    log:
        RESULTS + "/logs/train_task.log",
    benchmark:
        RESULTS + "/benchmarks/train_task.tsv"
    shell:
        "python -m taskcodec.stages.train_task --params {params.section:q} --threads {threads}"
        " --manifest {input.prepared:q}/manifest.csv --out {output.model:q} > {log:q} 2>&1"


rule extract_features:
    input:
        prepared=RESULTS + "/prepared",
        task_model=TASK_MODEL,
    output:
        directory(RESULTS + "/task/features"),
    params:
        section=as_json(config["task"]["features"]),
    log:
        RESULTS + "/logs/extract_features.log",
    benchmark:
        RESULTS + "/benchmarks/extract_features.tsv"
    shell:
        "python -m taskcodec.stages.extract_features --params {params.section:q} --task-model {input.task_model:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
