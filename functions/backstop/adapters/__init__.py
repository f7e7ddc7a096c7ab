"""Every AWS client behind a port: S3, DynamoDB, SNS, Secrets Manager, Step Functions, STS, Parameter Store."""
