def main(args):
    print("blackbox running")
    return {"blackbox": True, "args": args}
