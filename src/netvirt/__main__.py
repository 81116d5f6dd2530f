from netvirt.management.cli import main

main()
