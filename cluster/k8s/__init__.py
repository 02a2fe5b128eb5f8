"""KubeRay manifests rendered from the cluster config, and a strict validator for them.

Import the parts you need (`cluster.k8s.render`, `cluster.k8s.validation`); this package module stays
empty so importing the config never pulls the renderers in.
"""
