# Stage 2c: the self-supervised SimCLR network (seed 001), trained on the prepared train images without their
# labels; the variable-rate pyramid codec reads its frozen group-1 features (results/simclr/model.pt). A local
# simclr.weights file is an input too, so replacing it reruns the stage.


rule train_simclr:
    input:
        unpack(lambda wildcards: {"weights": config["simclr"]["weights"]} if config["simclr"]["weights"] else {}),
        prepared=results("prepared"),
    output:
        model=results("simclr", "model.pt"),
        metrics=results("simclr", "metrics.json"),
        train_log=results("simclr", "train_log.csv"),
    params:
        section=as_json(config["simclr"]),
    threads: job_threads("train_simclr")
    resources:
        **job_resources("train_simclr"),
    log:
        results("logs", "train_simclr.log"),
    benchmark:
        results("benchmarks", "train_simclr.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.train_simclr --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --mem-mb {resources.mem_mb} --manifest {input.prepared:q}/manifest.csv"
        " --out {output.model:q} > {log:q} 2>&1"
