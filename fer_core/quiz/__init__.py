"""The quiz: people against the network on the same faces (a round, its answers, the class board).

:mod:`.rounds` makes a round (faces drawn by seed, the model's answers) and scores answers;
:mod:`.store` keeps the rounds opened to a class and their answers, in a file of their own.
"""
