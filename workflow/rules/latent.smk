# Stage 5b: compressed-domain classifiers (seed 004): a cResNet on the cached y_hat and sigma_hat of
# every pretrained codec, without decoding; then the joint variant, whose codec encoder is fine-tuned
# together with the classifier and measured on real bitstreams.


rule train_latent_classifier:
    input:
        prepared=RESULTS + "/prepared",
        train=RESULTS + "/cache/" + CODEC + "/train",
        val=RESULTS + "/cache/" + CODEC + "/val",
        test=RESULTS + "/cache/" + CODEC + "/test",
    output:
        model=RESULTS + "/latent/" + CODEC + "/model.pt",
        metrics=RESULTS + "/latent/" + CODEC + "/metrics.json",
    params:
        section=as_json({key: config["latent_classifier"][key] for key in ("model", "train")}),
    threads: config["latent_classifier"]["train"]["threads"]
    log:
        RESULTS + "/logs/train_latent_classifier/" + CODEC + ".log",
    benchmark:
        RESULTS + "/benchmarks/train_latent_classifier/" + CODEC + ".tsv"
    shell:
        "python -m taskcodec.stages.train_latent_classifier --params {params.section:q} --threads {threads}"
        " --train-cache {input.train:q} --val-cache {input.val:q} --test-cache {input.test:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output.model:q} > {log:q} 2>&1"


rule train_joint_classifier:
    input:
        prepared=RESULTS + "/prepared",
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
        classifier=RESULTS + "/latent/" + CODEC + "/model.pt",
    output:
        directory(RESULTS + "/joint/" + CODEC),
    params:
        section=as_json({key: value for key, value in config["latent_classifier"]["joint"].items() if key != "enabled"}),
    threads: config["latent_classifier"]["train"]["threads"]
    log:
        RESULTS + "/logs/train_joint_classifier/" + CODEC + ".log",
    benchmark:
        RESULTS + "/benchmarks/train_joint_classifier/" + CODEC + ".tsv"
    shell:
        "python -m taskcodec.stages.train_joint_classifier --params {params.section:q} --threads {threads}"
        " --model {input.model:q} --classifier {input.classifier:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
