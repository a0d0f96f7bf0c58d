"""Research: paper reproductions that run on NeuroGrade's own data.

- ``transferability``: LogME, LEEP, NCE and H-score, candidate ranking and rank agreement.
- ``acgan``: an auxiliary-classifier GAN over penultimate feature vectors, class balancing.
- ``imbalance``: the class-imbalance ablation (real only / class weights / oversampling / ACGAN).

Heavy imports (torch) live inside ``acgan`` and ``imbalance``; ``transferability`` is numpy/scipy.
"""
