from . import main

main(prog_name="tvm-cosa")
