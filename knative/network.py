"""The NetworkPolicy of the knflow namespace: its pods may reach anything except the cloud metadata
address, where a node's cloud credentials are one GET away (an SSRF's first target). Pure.

`ipBlock` rules match addresses outside the cluster; some network plugins (Cilium) do not match pod
addresses with them, so a second rule allows every pod of every namespace (DNS, the broker, NATS, MongoDB).
"""

from __future__ import annotations

from typing import Any

from knative import naming
from knative.profile import Profile

NAME = "knflow-deny-metadata"
# AWS, GCP, Azure, OpenStack and most clouds' IMDS, and AWS's IPv6 IMDS (Nitro)
METADATA_V4 = "169.254.169.254/32"
METADATA_V6 = "fd00:ec2::254/128"


def deny_metadata_policy(profile: Profile) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": naming.metadata(NAME, profile.namespace, profile, "network-policy"),
        "spec": {
            "podSelector": {},  # every pod of the namespace
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA_V4]}},
                        {"ipBlock": {"cidr": "::/0", "except": [METADATA_V6]}},
                    ]
                },
                {"to": [{"namespaceSelector": {}}]},
            ],
        },
    }
