from surgsim.cli import main

main()
