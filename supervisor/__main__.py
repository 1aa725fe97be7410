from supervisor.cli.entry import main

main()
