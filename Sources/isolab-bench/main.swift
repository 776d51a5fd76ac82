print("isolab-bench")
