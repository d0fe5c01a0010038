"""Federated training of the CXR fracture bundle with NVIDIA FLARE (``monai.fl``'s ``MonaiAlgo`` per site).

Modules:

* :mod:`cxr_fl.client`: the site's training script (FLARE Client API around ``MonaiAlgo``);
* :mod:`cxr_fl.site_settings`: what each site sets locally (data folder, bundle, work folder), read at the site;
* :mod:`cxr_fl.teacher`: the stage-2 teacher policy (the site's own EMA teacher, or the global model each round);
* :mod:`cxr_fl.controller`: FedAvg that finishes a round with a quorum of sites;
* :mod:`cxr_fl.sites`: splits a phantom datalist into site datalists of different label regimes (benchmark, tests).

The job builder is ``fl/job.py``; the deployment guide describes provisioning and what leaves a site.
"""
