"""The process tree of `up`: the supervisor, its workers and their link, generations, file
watching and reload, and the runner each worker serves with."""
