"""What is sent: prompts files, graders, synthetic / ShareGPT / dataset / trace workloads, token counting."""
