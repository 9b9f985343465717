# Stage 5b: compressed-domain classifiers (seed 004): a cResNet on the cached y_hat and sigma_hat of
# every pretrained codec, without decoding; then the joint variant, whose codec encoder is fine-tuned
# together with the classifier and measured on real bitstreams.
# They are classifiers: without classification among the tasks (e.g. detection alone) no report_task asks for them,
# so they are not in the DAG, and the run says why once at its end (Snakefile, onsuccess).

LATENT_SKIP_REASON = (None if "classification" in TASKS else
                      f"they are classifiers and tasks holds {', '.join(TASKS)}, not classification")


rule train_latent_classifier:
    input:
        prepared=results("prepared"),
        train=results("cache", CODEC, "train"),
        val=results("cache", CODEC, "val"),
        test=results("cache", CODEC, "test"),
    output:
        model=results("latent", CODEC, "model.pt"),
        metrics=results("latent", CODEC, "metrics.json"),
    params:
        section=as_json({key: config["latent_classifier"][key] for key in ("model", "train")}),
    threads: job_threads("train_latent_classifier")
    resources:
        **job_resources("train_latent_classifier"),
    log:
        results("logs", "train_latent_classifier", f"{CODEC}.log"),
    benchmark:
        results("benchmarks", "train_latent_classifier", f"{CODEC}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.train_latent_classifier --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --train-cache {input.train:q}"
        " --val-cache {input.val:q} --test-cache {input.test:q} --manifest {input.prepared:q}/manifest.csv"
        " --out {output.model:q} > {log:q} 2>&1"


rule train_joint_classifier:
    input:
        prepared=results("prepared"),
        model=results("codecs", CODEC, "model.pt"),
        classifier=results("latent", CODEC, "model.pt"),
    output:
        directory(results("joint", CODEC)),
    params:
        section=as_json({key: value for key, value in config["latent_classifier"]["joint"].items() if key != "enabled"}),
    threads: job_threads("train_joint_classifier")
    resources:
        **job_resources("train_joint_classifier"),
    log:
        results("logs", "train_joint_classifier", f"{CODEC}.log"),
    benchmark:
        results("benchmarks", "train_joint_classifier", f"{CODEC}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.train_joint_classifier --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --model {input.model:q}"
        " --classifier {input.classifier:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
