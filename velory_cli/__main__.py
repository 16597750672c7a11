from velory_cli.cli import main

main()
