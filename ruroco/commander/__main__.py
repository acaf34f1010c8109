from ruroco.commander.cli import main

main(prog_name="ruroco-commander")
