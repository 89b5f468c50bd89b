"""AWS gateway: the only package that talks to boto3 and the sagemaker SDK.

Importing it creates no client; callers ask for small typed gateways
(`S3Gateway`, `IamGateway`, ...) that are handed a client.
"""
