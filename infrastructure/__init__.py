"""The Latchkey CDK app: one stack (`stack.LatchkeyStack`) composed of one construct per concern."""
