"""`mlbus k8s render`'s pure core: the catalogue, the principals and the services as Kubernetes manifests (dicts).

strimzi.py makes the KafkaTopics and KafkaUsers, workloads.py each service's Deployment and Secret, policies.py
what fences and scales them; render.py puts them together into a kustomize base. Nothing here reads a file or
the environment: k8s_cmd.py does, and writes what render() returns."""
