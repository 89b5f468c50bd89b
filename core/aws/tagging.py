from __future__ import annotations

from core.aws.base import Gateway


class TaggingGateway(Gateway):
    def resources_for_tenant(self, tag_key: str, slug: str) -> list[str]:
        arns: list[str] = []
        paginator = self.client.get_paginator("get_resources")
        for page in paginator.paginate(TagFilters=[{"Key": tag_key, "Values": [slug]}]):
            arns.extend(item["ResourceARN"] for item in page.get("ResourceTagMappingList", []))
        return arns
