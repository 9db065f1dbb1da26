#!/usr/bin/env python3
"""CDK entry point (`cdk synth`, `cdk deploy`): no AWS calls, synth needs no credentials."""

import aws_cdk as cdk

from infrastructure.stack import build

app = cdk.App()
build(app)
app.synth()
