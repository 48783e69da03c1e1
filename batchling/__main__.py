from batchling.cli import main

main()
